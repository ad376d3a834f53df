// What caching frozen-encoder features saves, per epoch (scripts/compare_cache.sh, docs/performance.md).
//
// CLIP methods that leave the image tower frozen (TaskRes, CLIP-Adapter, Tip-Adapter-F) train on
// features that `peft clip-train` encodes once (peft/feature_cache.h). Per epoch:
//   BM_ClipEncodeEpoch/P        the image tower over N images: what an ordinary loop adds to every epoch
//   BM_ClipHeadEpoch/P/M        one epoch of the method's training on cached features (train_clip_head)
// An ordinary loop's epoch costs encode + head; a cached epoch costs head alone.
// P: 0 = clip-micro (the `peft clip-demo` model, 32 px), 1 = clip-vit-b32 (224 px). Weights are
// random (timing does not depend on their values); the images are procedural:shapes.
// PEFT_THREADS=T sets the compute threads (default: as `peft` without --threads).
// M: 0 = taskres, 1 = clip-adapter, 2 = tip-adapter-f.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/threads.h"
#include "data/procedural.h"
#include "nn/clip.h"
#include "peft/clip_methods.h"
#include "peft/feature_cache.h"

using namespace peft;

namespace {

const char* kPresets[] = {"clip-micro", "clip-vit-b32"};
const int64_t kImages[] = {1024, 64};  // N per preset: B/32's tower costs ~4.4 GFLOP per image
const char* kMethods[] = {"taskres", "clip-adapter", "tip-adapter-f"};
constexpr int64_t kClasses = 10;

struct Setup {
  explicit Setup(int64_t preset) : cfg(nn::load_clip_config(kPresets[preset])), clip(cfg, 1) {
    clip.eval();
    const nn::ViTConfig& vc = cfg.vision;
    ds = std::make_shared<data::ProceduralDataset>("shapes", kImages[preset], vc.image_size, 1, data::Split::train,
                                                   vc.in_chans);
    // K prompt rows: ids in [1, V-2), end-of-text (the largest id) last, as the tokenizers make them.
    const int64_t V = cfg.text.vocab_size, T = cfg.text.context_length;
    std::vector<int64_t> ids(static_cast<size_t>(kClasses * T), 0);
    Generator g(2);
    for (int64_t k = 0; k < kClasses; ++k) {
      const int64_t len = 4 + k % 3;
      for (int64_t t = 0; t < len; ++t) ids[static_cast<size_t>(k * T + t)] = 1 + static_cast<int64_t>(g.next_u64() % static_cast<uint64_t>(V - 3));
      ids[static_cast<size_t>(k * T + len)] = V - 1;
    }
    tokens = from_vector_i64(ids, {kClasses, T});
  }
  nn::CLIPConfig cfg;
  nn::CLIP clip;
  std::shared_ptr<data::ProceduralDataset> ds;
  Tensor tokens;
};

Setup& setup(int64_t preset) {
  static Setup* s[2] = {nullptr, nullptr};
  if (!s[preset]) s[preset] = new Setup(preset);  // built once per process, kept to the end
  return *s[preset];
}

void BM_ClipEncodeEpoch(benchmark::State& state) {
  Setup& s = setup(state.range(0));
  EncodeOptions eo;
  eo.batch = 32;
  for (auto _ : state) {
    FeatureSet f = encode_dataset(s.clip, *s.ds, eo);
    benchmark::DoNotOptimize(f.features.raw_data());
  }
  state.counters["images"] = static_cast<double>(s.ds->size());
  state.SetLabel(kPresets[state.range(0)]);
}

void BM_ClipHeadEpoch(benchmark::State& state) {
  Setup& s = setup(state.range(0));
  const std::string method = kMethods[state.range(1)];
  EncodeOptions eo;
  FeatureSet f = encode_dataset(s.clip, *s.ds, eo);  // what the cache holds (not timed)
  std::vector<int64_t> lab = s.ds->labels();
  for (int64_t& y : lab) y %= kClasses;  // shapes has 6 classes; the head has kClasses rows
  Tensor labels = from_vector_i64(lab, {s.ds->size()});
  Tensor keys, key_labels;
  if (method == "tip-adapter-f") {
    keys = tip_cache_keys(f.features);
    key_labels = labels;
  }
  Generator gen(3);
  auto head = make_clip_head(s.clip, method, ClipMethodOptions{}, s.tokens, gen, keys, key_labels);
  ClipTrainConfig tc;
  tc.epochs = 1;
  tc.batch = 32;
  for (auto _ : state) {
    ClipTrainResult r = train_clip_head(*head, f.features, labels, tc);
    benchmark::DoNotOptimize(r.last_loss);
  }
  state.counters["images"] = static_cast<double>(s.ds->size());
  state.SetLabel(std::string(kPresets[state.range(0)]) + " " + method);
}

BENCHMARK(BM_ClipEncodeEpoch)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ClipHeadEpoch)
    ->ArgsProduct({{0, 1}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // PEFT_THREADS=T sets the compute threads, as `peft --threads T` does.
  if (const char* t = std::getenv("PEFT_THREADS")) set_num_threads(std::atoi(t));
  benchmark::AddCustomContext("peft threads", thread_policy());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
