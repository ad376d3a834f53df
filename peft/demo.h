// The embedded default experiment (`peft demo`, no downloads): pretrain vit-micro on a procedural
// source task, then adapt it to a shifted target task with every registered method, next to a
// linear probe on a random backbone.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/distributed.h"
#include "nn/config.h"

namespace peft {

struct DemoConfig {
  std::string out = "demo_out";  // pretrain/ (weights, model.json, metrics) goes here
  std::string source = "shapes", target = "shapes-textured";
  bool quick = false;  // a reduced size for CI smoke tests
  uint64_t seed = 0;
  // Under mpirun (issue 18): rank 0 pretrains (the others wait), then the adaptation runs are
  // spread over the ranks, each in one process (dist::spread_cells), and rank 0 alone gets the
  // rows. Null or one rank: everything in this process.
  dist::World* world = nullptr;
};

struct DemoRow {
  std::string method, backbone;  // backbone: "pretrained" or "random"
  int64_t trainable = 0, total = 0;
  double top1 = 0, train_time_s = 0, peak_rss_mb = 0;
};

struct DemoReport {
  nn::ViTConfig config;
  int64_t target_images = 0, epochs = 0;  // of the adaptation runs
  double source_top1 = 0;
  std::vector<DemoRow> rows;
};

// Runs the experiment; `say` gets one progress line at a time. With c.world of several ranks only
// rank 0's report holds the rows (the same as one process's, but for times and memory).
DemoReport run_demo(const DemoConfig& c, const std::function<void(const std::string&)>& say = {});

// The table (header line + one line per row), demo.json (an array of rows) and demo.csv.
std::string demo_table(const DemoConfig& c, const DemoReport& r);
std::string demo_json(const DemoReport& r);
std::string demo_csv(const DemoReport& r);

}  // namespace peft
