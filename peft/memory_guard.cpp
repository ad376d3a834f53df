// Memory guard: a float32 footprint model of one ViT training step, and /proc/meminfo.
#include "peft/memory_guard.h"

#include <fmt/format.h>

#include <cmath>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace peft {

namespace {

constexpr int64_t kF32 = 4;  // bytes per element: the trainer runs in float32

// First integer after `key` in a "Key:   value kB" file such as /proc/meminfo; -1 if absent.
int64_t read_meminfo_kb(const std::string& path, const std::string& key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream is(line.substr(key.size() + 1));
    int64_t kb = -1;
    is >> kb;
    return kb;
  }
  return -1;
}

// The single number in a cgroup file ("max" or a missing file -> -1).
int64_t read_number(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s == "max") return -1;
  try {
    return std::stoll(s);
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

std::string format_bytes(int64_t b) {
  const double x = static_cast<double>(b);
  if (b >= (int64_t{1} << 40)) return fmt::format("{:.2f} TiB", x / static_cast<double>(int64_t{1} << 40));
  if (b >= (int64_t{1} << 30)) return fmt::format("{:.2f} GiB", x / (1 << 30));
  if (b >= (int64_t{1} << 20)) return fmt::format("{:.1f} MiB", x / (1 << 20));
  if (b >= (int64_t{1} << 10)) return fmt::format("{:.1f} KiB", x / (1 << 10));
  return fmt::format("{} B", b);
}

std::string MemoryEstimate::str() const {
  return fmt::format("{} (parameters {}, gradients {}, optimizer {}, activations {}, data {})", format_bytes(total()),
                     format_bytes(params), format_bytes(grads), format_bytes(optimizer), format_bytes(activations),
                     format_bytes(data));
}

MemoryEstimate estimate_training_memory(const MemoryInputs& in) {
  const nn::ViTConfig& c = in.cfg;
  const int64_t B = in.batch, D = c.dim, M = c.mlp_hidden(), H = c.heads;
  const int64_t T = c.num_prefix_tokens() + c.num_patches() + in.extra_tokens;  // prefix tokens + patches + prompts
  MemoryEstimate e;
  e.params = in.total_params * kF32;
  e.grads = in.trainable_params * kF32;
  e.optimizer = in.trainable_params * kF32 * (in.optimizer == "sgd" ? 1 : 2);  // momentum | m and v

  // Live while one block runs forward (or backward): its input, LayerNorm output, q/k/v, attention
  // output, the MLP hidden layer before and after the activation, and scores + probabilities.
  const int64_t working = B * T * (7 * D + 2 * M) + 2 * B * H * T * T;
  // Kept per block for backward: the inputs of both LayerNorms, of qkv, proj, fc1 and fc2, q/k/v,
  // the activation's input ([B, T, M] twice: fc2 input and GELU input) and the softmax output.
  const int64_t saved = B * T * (8 * D + 2 * M) + B * H * T * T;
  const int64_t kept = !in.backbone_grad            ? 0
                       : in.checkpoint_activations ? c.depth * B * T * D + saved
                                                   : c.depth * saved;
  e.activations = kF32 * (working + kept);
  e.data = 2 * kF32 * B * c.in_chans * c.image_size * c.image_size;  // this batch and the next
  return e;
}

MemoryInputs memory_inputs(const nn::VisionTransformer& vit, int64_t batch, const std::string& optimizer) {
  MemoryInputs in;
  in.cfg = vit.cfg;
  in.batch = batch;
  in.total_params = vit.num_parameters(false);
  in.trainable_params = vit.num_parameters(true);
  in.optimizer = optimizer;
  in.backbone_grad = false;
  in.checkpoint_activations = vit.checkpoint_activations;
  for (const auto& [name, p] : vit.named_parameters())
    if (p.requires_grad() && name.rfind("head.", 0) != 0) in.backbone_grad = true;
  // Prompt tokens a hook adds lengthen the sequence: count them as tokens.
  if (vit.token_hook) in.extra_tokens += vit.token_hook->added_tokens();
  return in;
}

int64_t available_memory_bytes(const std::string& meminfo, const std::string& cgroup_dir) {
  const int64_t kb = read_meminfo_kb(meminfo, "MemAvailable");
  int64_t avail = kb >= 0 ? kb * 1024 : -1;
  // In a container the cgroup limit, not the host's free memory, is what the OOM killer enforces.
  const int64_t max = read_number(cgroup_dir + "/memory.max");
  const int64_t cur = read_number(cgroup_dir + "/memory.current");
  if (max >= 0 && cur >= 0) {
    const int64_t room = std::max<int64_t>(max - cur, 0);
    avail = avail < 0 ? room : std::min(avail, room);
  }
  return avail;
}

void check_memory(const MemoryEstimate& e, int64_t available_bytes) {
  if (available_bytes < 0 || e.total() <= available_bytes) return;
  throw ValueError(fmt::format("memory: training needs about {} but only {} is available. Hint: lower --batch, "
                               "use a smaller --config or a method with fewer trainable parameters",
                               e.str(), format_bytes(available_bytes)));
}

void check_memory(const nn::VisionTransformer& vit, int64_t batch, const std::string& optimizer) {
  check_memory(estimate_training_memory(memory_inputs(vit, batch, optimizer)), available_memory_bytes());
}

// One transformer block of dim D and MLP width H: both the ViT's and CLIP's text tower's.
static double block_param_count(double D, double H, bool qkv_bias, bool layer_scale) {
  return 4 * D                                  // two LayerNorms
         + 3 * D * D + (qkv_bias ? 3 * D : 0)   // qkv
         + D * D + D                            // proj
         + D * H + H + H * D + D                // MLP
         + (layer_scale ? 2 * D : 0);
}

double config_param_count(const nn::ViTConfig& c) {
  const double D = static_cast<double>(c.dim), H = std::floor(D * c.mlp_ratio), P = static_cast<double>(c.patch_size);
  const bool openai = c.style == "openai_clip_visual";
  // Patch embedding: no bias in the openai layout, nor before a norm_pre (as timm builds it).
  double n = static_cast<double>(c.in_chans) * P * P * D + (openai || c.norm_pre ? 0 : D);
  n += static_cast<double>(c.num_prefix_tokens()) * D;                          // cls / register tokens
  n += static_cast<double>(c.pos_embed_rows()) * D;
  if (c.norm_pre || openai) n += 2 * D;
  n += static_cast<double>(c.depth) * block_param_count(D, H, c.qkv_bias, c.layer_scale);
  n += 2 * D;  // norm or fc_norm
  if (openai) n += D * static_cast<double>(c.feature_dim());
  if (c.num_classes > 0) n += static_cast<double>(c.feature_dim()) * static_cast<double>(c.num_classes) + static_cast<double>(c.num_classes);
  return n;
}

namespace {

// ValueError when `n` float32 parameters, twice (weights being loaded sit beside them), exceed
// the memory available.
void check_parameter_memory(double n, const std::string& what) {
  const double bytes = 2 * 4 * n;
  const int64_t avail = available_memory_bytes();
  if (avail < 0 || bytes <= static_cast<double>(avail)) return;
  throw ValueError(fmt::format("memory: {} needs about {} for its parameters alone ({:.3g} float32 values, kept twice "
                               "while weights load) but only {} is available. Hint: use a smaller config",
                               what, format_bytes(bytes > 9e18 ? INT64_MAX : static_cast<int64_t>(bytes)), n,
                               format_bytes(avail)));
}

}  // namespace

void check_model_memory(const nn::ViTConfig& c, const std::string& what) {
  check_parameter_memory(config_param_count(c), what);
}

double clip_config_param_count(const nn::CLIPConfig& c) {
  const double W = static_cast<double>(c.text.width);
  // text blocks (nn/clip.cpp): the openai ViT block, qkv bias, MLP 4W, no layer scale
  const double block = block_param_count(W, 4 * W, /*qkv_bias=*/true, /*layer_scale=*/false);
  return config_param_count(c.vision) + static_cast<double>(c.text.vocab_size) * W +
         static_cast<double>(c.text.context_length) * W + static_cast<double>(c.text.layers) * block +
         2 * W                                            // ln_final
         + W * static_cast<double>(c.embed_dim) + 1;  // text_projection, logit_scale
}

void check_clip_model_memory(const nn::CLIPConfig& c, const std::string& what) {
  check_parameter_memory(clip_config_param_count(c), what);
}

}  // namespace peft
