// compare_methods: every method measured on its own fresh model (see compare.h).
#include "peft/compare.h"

#include "nn/checkpoint.h"

namespace peft {

std::unique_ptr<nn::VisionTransformer> build_on_base(const BaseModel& base, const std::string& method,
                                                     const MethodOptions& o, int64_t classes) {
  auto vit = build_model(base.config, method, o, classes, base.seed, [&](nn::VisionTransformer& v) {
    if (!base.weights.empty()) nn::load_vit_weights(v, base.weights);
  });
  vit->checkpoint_activations = base.checkpoint_activations;
  return vit;
}

int64_t classes_of(const nn::ViTConfig& c) { return c.num_classes > 0 ? c.num_classes : 10; }

std::vector<CostReport> compare_methods(const BaseModel& base, const std::vector<std::string>& methods,
                                        const MethodOptions& o, int64_t batch, int steps) {
  std::vector<CostReport> reports;
  for (const auto& m : methods) {
    auto vit = build_on_base(base, m, o, classes_of(base.config));
    CostReport r = measure_cost(*vit, batch, steps);
    r.method = m;
    r.prompts = vision_method(m).uses("prompts") ? o.prompts : 0;
    reports.push_back(r);
  }
  return reports;
}

nlohmann::json cost_json(const CostReport& r) {
  return {{"method", r.method},
          {"M", r.prompts},
          {"batch", r.batch},
          {"trainable", r.trainable},
          {"backbone", r.backbone},
          {"total", r.total},
          {"trainable_pct", r.trainable_pct},
          {"flops_per_image", r.flops_per_image},
          {"train_step_s", r.train_step_s},
          {"infer_batch_s", r.infer_batch_s},
          {"train_peak_bytes", r.train_peak_bytes},
          {"infer_peak_bytes", r.infer_peak_bytes},
          {"peak_rss_mb", r.peak_rss_mb}};
}

}  // namespace peft
