// `peft attention` as a library call: per layer, the share of the CLS token's attention that goes
// to VPT-deep's prompts for each prompt count M (the CVPT paper's Figure 2), on validation images
// or seeded noise, with the prompts at init or trained first.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/vit.h"
#include "peft/compare.h"

namespace peft {

struct PromptAttentionRequest {
  BaseModel base;
  std::vector<int64_t> counts;  // M; 0 is the plain model (share 0)
  std::string data;             // probe (and training) images; empty: seeded noise
  int64_t batch = 16;           // probe images (and the training batch)
  int64_t epochs = 0;           // > 0: train the prompts and head on `data` first
  int64_t train_size = 256;
  double lr = 1e-3;
};

struct PromptAttentionResult {
  std::vector<int64_t> counts;
  std::vector<std::vector<double>> share;  // [layer][count]
  int64_t images = 0;                      // probe images used
  bool trained = false;
};

// Per layer, the mean (over images and heads) of the attention probability mass that the CLS
// query (row 0) puts on the prompt keys 1..M. Needs keep_attention set and one forward run.
std::vector<double> cls_prompt_share(const nn::VisionTransformer& vit, int64_t M);

// Builds VPT-deep (the plain model with a head for M = 0) per count, trains it when asked, runs
// the probe batch and reads the shares. Throws MethodError for bad options.
PromptAttentionResult prompt_attention(const PromptAttentionRequest& req);

// The table (layer by M) and the CSV (layer,prompts,share).
std::string format_prompt_attention(const PromptAttentionResult& r);
std::string prompt_attention_csv(const PromptAttentionResult& r);
// The heatmap PNG: layers by M.
void save_prompt_attention_heatmap(const PromptAttentionResult& r, const std::string& path);

}  // namespace peft
