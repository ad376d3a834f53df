// `peft sweep` as a library call: cost (and, with a dataset, accuracy) of prompt methods against
// the number of prompts M, the CVPT paper's Figures 1 and 4. Every curve starts at M = 0, the
// frozen backbone with a head alone (the linear probe).
#pragma once
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/distributed.h"
#include "data/dataset.h"
#include "peft/compare.h"

namespace peft {

struct SweepRequest {
  BaseModel base;
  std::vector<std::string> methods;  // each reads --prompts
  std::vector<int64_t> counts;       // M > 0
  MethodOptions opts;                // the other method options (prompts is set per point)
  int64_t batch = 8;
  int steps = 3;
  int64_t epochs = 1;  // per point, with a dataset
  double lr = 1e-3;
  // Under mpirun (issue 18): the points are spread over the ranks, each point in one process
  // (dist::spread_cells), and rank 0 alone gets the result. Null or one rank: a plain loop.
  dist::World* world = nullptr;
};

// The datasets the points train and evaluate on (none: cost only), and the head size.
struct SweepData {
  data::DatasetPtr train, val;
  int64_t classes = 0;
};
// Opens `spec` (empty: no data, classes from the config) with the config's preprocessing.
SweepData open_sweep_data(const nn::ViTConfig& c, const std::string& spec, int64_t train_size, int64_t val_size,
                          uint64_t seed);

struct SweepRow {
  CostReport cost;
  double top1 = NAN;  // NaN without data
};

struct SweepResult {
  std::vector<std::string> methods;
  SweepRow base;               // M = 0: the linear probe
  std::vector<SweepRow> rows;  // by method, then by M
  bool trained = false;
};

// Measures (and trains and evaluates, with data) every method at every M on a fresh model. With
// req.world of several ranks, only rank 0's result holds the rows (the same as one process's,
// but for the measured times and memory, which the ranks' sharing of the machine changes).
SweepResult run_sweep(const SweepRequest& req, const SweepData& d);

// The table: header, the baseline, then each method by M (MFLOPs/img, step ms, MiB, top1).
std::string format_sweep_table(const SweepResult& r);
// The same rows as CSV with raw numbers (sweep.csv), and as JSON (`peft sweep --json` rows).
std::string sweep_csv(const SweepResult& r);
nlohmann::json sweep_json_rows(const SweepResult& r);
// dir/flops.png, memory.png, step_time.png (and accuracy.png when trained): one curve per method
// over M, each starting at the M = 0 baseline.
void save_sweep_plots(const SweepResult& r, const std::string& dir);

}  // namespace peft
