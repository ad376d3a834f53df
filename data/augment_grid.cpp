// The augmentation preview: the training loader's batches of one example, tiled.
#include "data/augment_grid.h"

#include <algorithm>

#include "core/error.h"
#include "data/loader.h"

namespace peft::data {

Image from_chw(const float* chw, int64_t C, int64_t H, int64_t W, const Normalization& norm) {
  std::array<float, 3> mean = norm.mean, std = norm.std;
  if (C == 1) {  // to_chw's rule for grey images: the mean of the three
    mean[0] = (norm.mean[0] + norm.mean[1] + norm.mean[2]) / 3.0f;
    std[0] = (norm.std[0] + norm.std[1] + norm.std[2]) / 3.0f;
  }
  Image img(H, W, C);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t p = 0; p < H * W; ++p)
      img.pixels[static_cast<size_t>(p * C + c)] =
          std::clamp(chw[c * H * W + p] * std[static_cast<size_t>(c)] + mean[static_cast<size_t>(c)], 0.0f, 1.0f);
  return img;
}

namespace {

void paste(Image& canvas, const Image& tile, int64_t top, int64_t left) {
  const Image rgb = tile.C == 3 ? tile : convert_channels(tile, 3);
  for (int64_t y = 0; y < rgb.H; ++y)
    for (int64_t x = 0; x < rgb.W; ++x)
      for (int64_t c = 0; c < 3; ++c) canvas.at(top + y, left + x, c) = rgb.at(y, x, c);
}

}  // namespace

Image augment_grid(const DatasetPtr& ds, const Augment& a, const Preprocess& p, const AugmentGridOptions& o) {
  if (o.samples <= 0) throw ValueError("--n: must be positive (got " + std::to_string(o.samples) + ")");
  if (o.per_row <= 0) throw ValueError("--per-image: must be positive (got " + std::to_string(o.per_row) + ")");
  if (!ds || ds->size() == 0) throw ValueError("augment: the dataset is empty");
  LoaderOptions lo;
  lo.batch_size = 1;  // batch b of an unshuffled epoch is example b
  lo.shuffle = false;
  lo.prefetch = false;
  lo.seed = o.seed;
  set_pipeline(lo, a, p);
  DataLoader loader(ds, lo);
  const int64_t rows = (o.samples + o.per_row - 1) / o.per_row;
  const int64_t S = p.size, g = o.gap, cols = 1 + std::min(o.per_row, o.samples);
  Image canvas(rows * S + (rows + 1) * g, cols * S + (cols + 1) * g, 3);
  std::fill(canvas.pixels.begin(), canvas.pixels.end(), 1.0f);
  int64_t drawn = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r * ds->size() / rows;
    const int64_t top = g + r * (S + g);
    paste(canvas, ds->load(i), top, g);
    for (int64_t v = 0; v < o.per_row && drawn < o.samples; ++v, ++drawn) {
      const Batch b = loader.make_batch(v, i);
      const Tensor& t = b.images;  // [1, C, S, S]
      paste(canvas, from_chw(t.data<float>(), t.size(1), t.size(2), t.size(3), p.norm), top, g + (v + 1) * (S + g));
    }
  }
  return canvas;
}

}  // namespace peft::data
