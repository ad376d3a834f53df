// Decoding + eval preprocessing of large JPEGs, images/s: what `peft eval` pays per image file.
//
//   BM_Before                stb_image full decode + the old non-antialiased bilinear squash to S x S
//                            (ImageFolder::load before the checkpoint's preprocessing)
//   BM_FullDecode/M          stb_image full decode + eval_transform (antialiased): the new
//                            transform without the reduced decode
//   BM_Reduced/M             ImageFolder::load now: load_image_reduced (libjpeg-turbo M/8 scale
//                            keeping the short side eval_transform needs) + eval_transform
//   BM_Original              ImageFolder::load_original (short side >= 2 S, what rrc crops)
// M: 0 = 224 px squash bilinear (this project's models), 1 = 224 px bicubic centre crop 0.875 (timm).
// The images: PEFT_DECODE_IMAGES (default 20) JPEGs of PEFT_DECODE_W x PEFT_DECODE_H (default
// 3000 x 2000), quality 90, 4:2:0, written once per process by libjpeg-turbo into a temporary
// folder (photo-like: gradients, texture, noise). One thread; items/s is images/s.
#include <benchmark/benchmark.h>
#include <turbojpeg.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/random.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "data/transforms.h"

using namespace peft;

namespace {

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoll(v) : fallback;
}

std::vector<uint8_t> photo(int64_t H, int64_t W, uint64_t seed) {
  std::vector<uint8_t> px(static_cast<size_t>(H * W * 3));
  Generator g(seed);
  const double f = 1.0 + static_cast<double>(seed % 5);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < 3; ++c) {
        const double smooth = 0.5 + 0.3 * std::sin(f * static_cast<double>(x) / 300.0 + static_cast<double>(c)) *
                                        std::cos(static_cast<double>(y) / (200.0 + 50.0 * static_cast<double>(c)));
        const double texture = 0.08 * std::sin(static_cast<double>(x * y % 997) / 40.0);
        const double v = 255.0 * (smooth + texture) + 12.0 * (g.uniform() - 0.5);
        px[static_cast<size_t>((y * W + x) * 3 + c)] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
  return px;
}

// ROOT/a/img_NN.jpg, written once.
struct Images {
  std::string root;
  int64_t n;
  Images() : n(env_int("PEFT_DECODE_IMAGES", 20)) {
    const int64_t W = env_int("PEFT_DECODE_W", 3000), H = env_int("PEFT_DECODE_H", 2000);
    root = (std::filesystem::temp_directory_path() / ("peft_bench_decode_" + std::to_string(W) + "x" + std::to_string(H)))
               .string();
    std::filesystem::create_directories(root + "/a");
    tjhandle tj = tjInitCompress();
    for (int64_t i = 0; i < n; ++i) {
      const std::string path = root + "/a/img_" + std::to_string(100 + i) + ".jpg";
      if (std::filesystem::exists(path)) continue;
      std::vector<uint8_t> px = photo(H, W, static_cast<uint64_t>(i));
      unsigned char* buf = nullptr;
      unsigned long size = 0;
      if (tjCompress2(tj, px.data(), static_cast<int>(W), 0, static_cast<int>(H), TJPF_RGB, &buf, &size, TJSAMP_420, 90,
                      0) != 0)
        throw std::runtime_error(std::string("bench_decode: tjCompress2: ") + tjGetErrorStr2(tj));
      std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(buf), static_cast<std::streamsize>(size));
      tjFree(buf);
    }
    tjDestroy(tj);
  }
};

const Images& images() {
  static const Images im;
  return im;
}

data::Preprocess preprocess(int64_t mode) {
  data::Preprocess p = data::squash_preprocess(224);
  if (mode == 1) {
    p.interpolation = "bicubic";
    p.crop_pct = 0.875;
    p.crop_mode = "center";
  }
  return p;
}

void report(benchmark::State& state, int64_t per_iteration, const std::string& label) {
  state.SetItemsProcessed(state.iterations() * per_iteration);
  state.SetLabel(label);
}

void BM_Before(benchmark::State& state) {
  data::ImageFolder ds(images().root, 224);
  for (auto _ : state)
    for (int64_t i = 0; i < ds.size(); ++i) {
      data::Image img = data::resize_bilinear(data::load_image(ds.path(i), 3), 224, 224);
      benchmark::DoNotOptimize(img.pixels.data());
    }
  report(state, ds.size(), "stb + resize_bilinear 224 squash");
}

void BM_FullDecode(benchmark::State& state) {
  const data::Preprocess p = preprocess(state.range(0));
  data::ImageFolder ds(images().root, p);
  for (auto _ : state)
    for (int64_t i = 0; i < ds.size(); ++i) {
      data::Image img = data::eval_transform(data::load_image(ds.path(i), 3), p);
      benchmark::DoNotOptimize(img.pixels.data());
    }
  report(state, ds.size(), "stb + " + p.describe());
}

void BM_Reduced(benchmark::State& state) {
  const data::Preprocess p = preprocess(state.range(0));
  data::ImageFolder ds(images().root, p);
  for (auto _ : state)
    for (int64_t i = 0; i < ds.size(); ++i) {
      data::Image img = ds.load(i);
      benchmark::DoNotOptimize(img.pixels.data());
    }
  report(state, ds.size(), "reduced + " + p.describe());
}

void BM_Original(benchmark::State& state) {
  data::ImageFolder ds(images().root, preprocess(1));
  int64_t short_side = 0;
  for (auto _ : state)
    for (int64_t i = 0; i < ds.size(); ++i) {
      data::Image img = ds.load_original(i);
      short_side = std::min(img.H, img.W);
      benchmark::DoNotOptimize(img.pixels.data());
    }
  report(state, ds.size(), "load_original, short side " + std::to_string(short_side));
}

}  // namespace

BENCHMARK(BM_Before)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_FullDecode)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Reduced)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Original)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_MAIN();
