// Lab 6 (docs/labs/06-clip.md): zero-shot CLIP, then TaskRes, CoOp, CLIP-Adapter, Tip-Adapter and
// Tip-Adapter-F trained on few-shot image features of the tiny CLIP (clip-micro, procedural word
// tokenizer: no files). By default the CLIP is randomly initialised, so the numbers show the
// mechanics (accuracies near chance), not the accuracy of a pretrained model. Pass the weights of
// a contrastively trained clip-micro to see real ones:
//   peft clip-demo --out demo && ./example_lab06_clip demo/clip.safetensors
#include <fmt/format.h>

#include <chrono>
#include <string>
#include <vector>

#include "apps/examples/labs/lab06_clip.h"
#include "nn/checkpoint.h"
#include "data/loader.h"
#include "data/procedural.h"
#include "peft/clip_methods.h"
#include "peft/feature_cache.h"

int main(int argc, char** argv) {
  using namespace peft;
  auto clip = lab06::make_clip(0);
  const bool trained = argc > 1;
  if (trained) nn::load_weights(*clip, argv[1]);  // strict: every clip-micro tensor
  const int64_t S = clip->cfg.vision.image_size, shots = 8;
  auto pool = std::make_shared<data::ProceduralDataset>("shapes", 96, S, 1, data::Split::train);
  const std::vector<std::string> classes = pool->class_names();
  const int64_t K = static_cast<int64_t>(classes.size());
  auto few = std::make_shared<data::Subset>(pool, data::few_shot_indices(*pool, shots, 1));
  data::ProceduralDataset testset("shapes", 120, S, 1, data::Split::test);
  // The image tower is frozen in every method: encode the images once.
  FeatureSet train = encode_dataset(*clip, *few), test = encode_dataset(*clip, testset);
  fmt::print("clip-micro ({}), task shapes: {} classes, {} shots ({} images), {} test images\n",
             trained ? argv[1] : "random init", K, shots, few->size(), testset.size());

  int wrong = 0;
  // 1. Zero-shot: one template (the library head) and the three-template ensemble (exercise 1).
  Tensor tokens = lab06::class_tokens(*clip, classes, lab06::templates()[0]);
  Generator gen(0);
  auto zs = make_clip_head(*clip, "zeroshot", {}, tokens, gen);
  Tensor c1 = lab06::zero_shot_classifier(*clip, classes, {lab06::templates()[0]});
  Tensor c3 = lab06::zero_shot_classifier(*clip, classes, lab06::templates());
  const double d1 = max_abs_diff(lab06::zero_shot_logits(*clip, test.features, c1), zs->forward(test.features));
  wrong += d1 > 1e-3;
  auto accuracy = [&](const Tensor& logits) {
    const std::vector<double> l = logits.to_vector<double>();
    const std::vector<int64_t> y = test.labels.to_vector<int64_t>();
    int64_t hit = 0;
    for (size_t b = 0; b < y.size(); ++b) {
      int64_t best = 0;
      for (int64_t k = 1; k < K; ++k)
        if (l[b * K + k] > l[b * K + best]) best = k;
      hit += best == y[b];
    }
    return 100.0 * static_cast<double>(hit) / static_cast<double>(y.size());
  };
  fmt::print("zero-shot, '{}': top1 {:.1f}%   (|mine - library| = {:.1e})\n", lab06::templates()[0],
             clip_head_accuracy(*zs, test.features, test.labels), d1);
  {
    NoGradGuard ng;
    fmt::print("zero-shot, {} templates ensembled: top1 {:.1f}%\n", lab06::templates().size(),
               accuracy(lab06::zero_shot_logits(*clip, test.features, c3)));
  }

  // 2. Few-shot heads trained on the cached features.
  Tensor keys = tip_cache_keys(train.features);
  fmt::print("\n{:<14} {:>10} {:>8} {:>10} {:>9}\n", "method", "trainable", "top1 %", "last loss", "time s");
  for (const std::string m : {"zeroshot", "taskres", "coop", "clip-adapter", "tip-adapter", "tip-adapter-f"}) {
    ClipMethodOptions o;
    if (m == "coop") o.prompts = 4;  // replaces "a photo of a": 4 learned context vectors
    if (m == "tip-adapter" || m == "tip-adapter-f") o.beta = 3.0;
    auto head = make_clip_head(*clip, m, o, tokens, gen, keys, train.labels);
    ClipTrainConfig tc;
    tc.epochs = 30;
    tc.batch = 16;
    tc.lr = m == "taskres" ? 1e-2 : (m == "coop" ? 2e-3 : 1e-3);
    ClipTrainResult r = train_clip_head(*head, train.features, train.labels, tc);
    const double acc = clip_head_accuracy(*head, test.features, test.labels);
    fmt::print("{:<14} {:>10} {:>8.1f} {:>10.4f} {:>9.2f}\n", m, head->num_parameters(true), acc, r.last_loss,
               r.train_time_s);
    NoGradGuard ng;
    // Exercises 2 and 3 reproduce the trained heads from their tensors.
    if (m == "taskres") {
      Tensor base = clip->encode_text(tokens), R;
      for (auto& [n, t] : head->named_parameters()) R = t;
      const double d = max_abs_diff(lab06::taskres_logits(*clip, test.features, base, R, 0.5), head->forward(test.features));
      wrong += d > 1e-3;
      fmt::print("  taskres re-implemented: |mine - library| = {:.1e}\n", d);
    }
    if (m == "tip-adapter-f") {
      Tensor trained_keys;
      for (auto& [n, t] : head->named_parameters()) trained_keys = t;
      const double d = max_abs_diff(lab06::tip_adapter_logits(test.features, c1, trained_keys, train.labels, 1.17, 3.0),
                                    head->forward(test.features));
      wrong += d > 1e-3;
      fmt::print("  tip-adapter-f re-implemented: |mine - library| = {:.1e}\n", d);
    }
  }
  if (wrong) fmt::print("\n{} re-implementation(s) differ from the library\n", wrong);
  return wrong == 0 ? 0 : 1;
}
