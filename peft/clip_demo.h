// The embedded CLIP experiment (`peft clip-demo`, no downloads): a tiny CLIP (clip-micro) is
// trained contrastively on captioned procedural images (peft/clip_pretrain.h); then it classifies
// a target task zero-shot from prompts, and every CLIP method of the registry, next to a linear
// probe, adapts it with a few shots per class.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace peft {

struct ClipDemoConfig {
  std::string out = "clip_demo_out";  // clip.safetensors, clip.json, prompts.txt and feature_cache/ go here
  std::string target = "colors";      // the procedural task it adapts to
  std::vector<int64_t> shots = {1, 2, 4, 8, 16};  // shots per class, each > 0
  // The rows, in order: "zeroshot", "linear-probe" or CLIP methods. Empty: zeroshot, linear-probe,
  // then every other method of the registry.
  std::vector<std::string> methods;
  int64_t pretrain_size = 12000, pretrain_epochs = 6;
  std::string weights;  // skip pretraining: start from these clip-micro weights (a previous run's clip.safetensors)
  bool quick = false;   // reduced sizes for the smoke test
  uint64_t seed = 0;
};

struct ClipDemoRow {
  std::string method;
  int64_t trainable = 0;
  std::vector<double> top1;  // per entry of ClipDemoReport::shots, in percent
  double time_s = 0;         // over every shot count
};

struct ClipDemoReport {
  std::vector<int64_t> shots;
  int64_t num_classes = 0, test_images = 0;
  double pretrain_loss = 0, pretrain_time_s = 0, fewshot_time_s = 0, zeroshot_top1 = 0;
  std::vector<ClipDemoRow> rows;  // one per ClipDemoConfig::methods
};

// Runs the experiment (writes the model, the prompts and the feature cache under c.out); `say`
// gets one progress line at a time. ValueError for an unknown method or an empty shot list.
ClipDemoReport run_clip_demo(const ClipDemoConfig& c, const std::function<void(const std::string&)>& say = {});

// The summary line and the table (a header and one line per method), clip_demo.json (an array
// of rows), clip_demo.csv, and the plot of top-1 against log2(shots), one series per method.
std::string clip_demo_table(const ClipDemoConfig& c, const ClipDemoReport& r);
std::string clip_demo_json(const ClipDemoReport& r);
std::string clip_demo_csv(const ClipDemoReport& r);
void save_clip_demo_plot(const ClipDemoReport& r, const std::string& path);

}  // namespace peft
