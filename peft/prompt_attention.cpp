// prompt_attention and its renderings (see prompt_attention.h).
#include "peft/prompt_attention.h"

#include <fmt/format.h>

#include <algorithm>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/random.h"
#include "data/dataset.h"
#include "data/plot.h"
#include "data/transforms.h"
#include "nn/config.h"
#include "peft/trainer.h"

namespace peft {

namespace {

// The probe batch: the first `batch` validation images of `val`, else seeded noise.
Tensor probe_images(const nn::ViTConfig& c, const data::DatasetPtr& val, int64_t batch, uint64_t seed) {
  if (!val) {
    Generator g(seed + 7);
    return randn({batch, c.in_chans, c.image_size, c.image_size}, g);
  }
  std::vector<Tensor> xs;
  const data::Normalization norm = normalization_for(c);
  for (int64_t i = 0; i < std::min(batch, val->size()); ++i) xs.push_back(data::to_tensor(val->load(i), norm));
  return stack(xs, 0);
}

}  // namespace

std::vector<double> cls_prompt_share(const nn::VisionTransformer& vit, int64_t M) {
  std::vector<double> share;
  for (const auto& blk : vit.block_list) {
    const Tensor& p = blk->attn->last_attention;  // [B, H, T, T]
    const int64_t B = p.size(0), H = p.size(1), T = p.size(2);
    const std::vector<double> a = p.to(DType::f64).to_vector<double>();
    double sum = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const double* row0 = a.data() + ((b * H + h) * T) * T;  // the CLS query's row
        for (int64_t j = 1; j <= M; ++j) sum += row0[j];
      }
    share.push_back(sum / static_cast<double>(B * H));
  }
  return share;
}

PromptAttentionResult prompt_attention(const PromptAttentionRequest& req) {
  const nn::ViTConfig& c = req.base.config;
  const uint64_t seed = req.base.seed;
  data::DatasetPtr train, val;
  int64_t classes = classes_of(c);
  if (!req.data.empty()) {
    val = data::open_dataset(req.data, data::Split::val, nn::effective_preprocess(c), c.in_chans, req.batch, seed);
    if (req.epochs > 0)
      train = data::open_dataset(req.data, data::Split::train, nn::effective_preprocess(c), c.in_chans, req.train_size, seed);
    classes = val->num_classes();
  }
  const Tensor images = probe_images(c, val, req.batch, seed);

  PromptAttentionResult r;
  r.counts = req.counts;
  r.images = images.size(0);
  r.trained = train != nullptr;
  r.share.resize(static_cast<size_t>(c.depth));
  for (int64_t M : req.counts) {
    MethodOptions o;
    o.prompts = std::max<int64_t>(M, 1);
    auto vit = build_on_base(req.base, M > 0 ? "vpt-deep" : "linear", o, classes);
    if (train) {
      TrainConfig tc;
      tc.epochs = req.epochs;
      tc.batch = std::min<int64_t>(req.batch, train->size());
      tc.lr = req.lr;
      tc.seed = seed;
      tc.progress = false;
      train_model(*vit, train, nullptr, tc);
    }
    for (auto& blk : vit->block_list) blk->attn->keep_attention = true;
    NoGradGuard ng;
    vit->eval();
    vit->forward(images);
    const std::vector<double> s = cls_prompt_share(*vit, M);
    for (size_t l = 0; l < s.size(); ++l) r.share[l].push_back(s[l]);
  }
  return r;
}

std::string format_prompt_attention(const PromptAttentionResult& r) {
  std::string out = fmt::format("{:<7}", "layer");
  for (int64_t M : r.counts) out += fmt::format(" {:>8}", fmt::format("M={}", M));
  out += "\n";
  for (size_t l = 0; l < r.share.size(); ++l) {
    out += fmt::format("{:<7}", l);
    for (double v : r.share[l]) out += fmt::format(" {:>8.4f}", v);
    out += "\n";
  }
  return out;
}

std::string prompt_attention_csv(const PromptAttentionResult& r) {
  std::string csv = "layer,prompts,share\n";
  for (size_t l = 0; l < r.share.size(); ++l)
    for (size_t j = 0; j < r.counts.size(); ++j) csv += fmt::format("{},{},{:.6g}\n", l, r.counts[j], r.share[l][j]);
  return csv;
}

void save_prompt_attention_heatmap(const PromptAttentionResult& r, const std::string& path) {
  data::Heatmap h;
  h.title = "CLS attention on prompts";
  h.xlabel = "prompts M";
  h.ylabel = "layer";
  for (size_t l = 0; l < r.share.size(); ++l) h.row_labels.push_back(std::to_string(l));
  for (int64_t M : r.counts) h.col_labels.push_back(std::to_string(M));
  h.values = r.share;
  data::save_heatmap(h, path);
}

}  // namespace peft
