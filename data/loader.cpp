// DataLoader: epoch orders, batch assembly, the one-batch-ahead prefetch thread; few-shot and VTAB splits.
#include "data/loader.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "core/error.h"

namespace peft::data {

namespace {

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
// Independent streams for (seed, a, b): each level goes through the full mixer.
uint64_t stream_seed(uint64_t seed, uint64_t a, uint64_t b = 0) {
  uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL);
  h = mix64(h ^ (a + 1) * 0xd1b54a32d192ed03ULL);
  return mix64(h ^ (b + 1) * 0x8cb92ba72f3d8dd7ULL);
}

// Tags keep the shuffling, augmentation and split streams apart under one user seed.
constexpr uint64_t kShuffleTag = 1, kAugmentTag = 2, kFewShotTag = 3, kSplitTag = 4;

}  // namespace

std::vector<int64_t> random_permutation(int64_t n, Generator& gen) {
  std::vector<int64_t> p(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    // unbiased integer in [0, i]
    const uint64_t m = static_cast<uint64_t>(i) + 1;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % m;
    uint64_t r = gen.next_u64();
    while (r >= limit) r = gen.next_u64();
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(r % m)]);
  }
  return p;
}

// ---- DataLoader

DataLoader::DataLoader(DatasetPtr dataset, LoaderOptions options) : dataset_(std::move(dataset)), opt_(std::move(options)) {
  if (!dataset_) throw ValueError("data_loader: dataset is null");
  if (opt_.batch_size <= 0)
    throw ValueError("data_loader: batch size must be positive (got " + std::to_string(opt_.batch_size) +
                     "). Hint: --batch 32");
  if (dataset_->size() == 0) throw ValueError("data_loader: dataset is empty (" + dataset_->describe() + ")");
  if (opt_.original_images && !opt_.transform)
    throw ValueError("data_loader: original_images is set but there is no transform to bring the originals to " +
                     std::to_string(dataset_->image_size()) + " x " + std::to_string(dataset_->image_size()) +
                     ". Hint: set_pipeline(options, augment, preprocess)");
  shard_rows(0, opt_.shard, opt_.shards);  // refuses a bad shard now, not at the first batch
  if (opt_.workers < 1)
    throw ValueError("data_loader: workers must be >= 1 (got " + std::to_string(opt_.workers) + "). Hint: --workers 2");
}

void set_pipeline(LoaderOptions& o, const Augment& a, const Preprocess& p) {
  o.transform = make_transform(a, p);
  o.original_images = a.rrc;
}

DataLoader::~DataLoader() {
  if (worker_.joinable()) worker_.join();
}

int64_t DataLoader::num_batches() const {
  const int64_t n = dataset_->size(), B = opt_.batch_size;
  return opt_.drop_last ? n / B : (n + B - 1) / B;
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  if (!opt_.shuffle) {
    std::vector<int64_t> p(static_cast<size_t>(dataset_->size()));
    for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<int64_t>(i);
    return p;
  }
  Generator g(stream_seed(opt_.seed, kShuffleTag, static_cast<uint64_t>(epoch)));
  return random_permutation(dataset_->size(), g);
}

void DataLoader::build_row(int64_t i, int64_t epoch, float* dst) const {
  const int64_t C = dataset_->channels(), S = dataset_->image_size(), per = C * S * S;
  Image img = opt_.original_images ? dataset_->load_original(i) : dataset_->load(i);
  if (img.C != C || (!opt_.original_images && (img.H != S || img.W != S)))
    throw ShapeError("data_loader: example " + std::to_string(i) + " has shape [" + std::to_string(img.H) + ", " +
                     std::to_string(img.W) + ", " + std::to_string(img.C) + "] (expected [" + std::to_string(S) +
                     ", " + std::to_string(S) + ", " + std::to_string(C) + "])");
  if (!opt_.transform) return to_chw(img, no_normalization(), dst);
  Generator g(stream_seed(opt_.seed ^ kAugmentTag, static_cast<uint64_t>(epoch), static_cast<uint64_t>(i)));
  Tensor t = opt_.transform(img, g);
  if (t.dtype() != DType::f32 || t.numel() != per)
    throw ShapeError("data_loader: transform returned " + shape_str(t.sizes()) + " " + dtype_name(t.dtype()) +
                     " (expected [" + std::to_string(C) + ", " + std::to_string(S) + ", " + std::to_string(S) +
                     "] float32). Hint: the transform must keep the image size");
  Tensor c = t.is_contiguous() ? t : t.clone();
  std::memcpy(dst, c.data<float>(), static_cast<size_t>(per) * sizeof(float));
}

Batch DataLoader::build(const std::vector<int64_t>& order, int64_t epoch, int64_t b) const {
  const int64_t n = dataset_->size(), B = opt_.batch_size;
  const auto [first, last] = shard_rows(std::min(n, b * B + B) - b * B, opt_.shard, opt_.shards);
  const int64_t begin = b * B + first, end = b * B + last, rows = end - begin;
  const int64_t C = dataset_->channels(), S = dataset_->image_size(), per = C * S * S;
  Batch out;
  out.epoch = epoch;
  out.index = b;
  out.images = empty({rows, C, S, S}, DType::f32);
  out.indices.assign(order.begin() + begin, order.begin() + end);
  std::vector<int64_t> labels(static_cast<size_t>(rows));
  float* dst = out.images.data<float>();
  // Workers take the next row until none is left; a row's result does not depend on which
  // thread built it. The first failing row's error (lowest row, whatever the timing) is raised.
  std::atomic<int64_t> next{0};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(rows));
  auto work = [&] {
    for (int64_t r; (r = next.fetch_add(1)) < rows;) {
      const int64_t i = out.indices[static_cast<size_t>(r)];
      try {
        build_row(i, epoch, dst + r * per);
        labels[static_cast<size_t>(r)] = dataset_->label(i);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> helpers;
  for (int64_t w = 1; w < std::min(opt_.workers, rows); ++w) helpers.emplace_back(work);
  work();  // this thread is worker 0
  for (auto& t : helpers) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  out.labels = from_vector_i64(labels, {rows});
  return out;
}

std::pair<int64_t, int64_t> shard_rows(int64_t len, int64_t shard, int64_t shards) {
  if (shards < 1 || shard < 0 || shard >= shards)
    throw ValueError("data_loader: shard " + std::to_string(shard) + " of " + std::to_string(shards) +
                     " (expected 0 <= shard < shards)");
  return {len * shard / shards, len * (shard + 1) / shards};
}

Batch DataLoader::make_batch(int64_t epoch, int64_t b) const {
  if (b < 0 || b >= num_batches())
    throw ValueError("data_loader: batch index out of range (got " + std::to_string(b) + ", expected [0, " +
                     std::to_string(num_batches()) + "))");
  return build(epoch_order(epoch), epoch, b);
}

void DataLoader::join_worker() {
  if (worker_.joinable()) worker_.join();
}

void DataLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  if (first_batch < 0 || first_batch > num_batches())
    throw ValueError("data_loader: first batch out of range (got " + std::to_string(first_batch) + ", expected [0, " +
                     std::to_string(num_batches()) + "])");
  join_worker();  // a prefetch of the previous epoch is discarded
  pending_index_ = -1;
  pending_ = Batch{};
  pending_error_ = nullptr;
  epoch_ = epoch;
  cursor_ = first_batch;
  order_ = epoch_order(epoch);
  started_ = true;
}

bool DataLoader::next(Batch& out) {
  if (!started_) throw StateError("data_loader: next() before start_epoch(). Hint: call start_epoch(epoch) first");
  if (cursor_ >= num_batches()) return false;

  if (pending_index_ == cursor_) {
    join_worker();
    pending_index_ = -1;
    if (pending_error_) {
      std::exception_ptr e = pending_error_;
      pending_error_ = nullptr;
      std::rethrow_exception(e);  // cursor_ stays: calling next() again retries this batch
    }
    out = std::move(pending_);
    pending_ = Batch{};
  } else {
    out = build(order_, epoch_, cursor_);
  }
  ++cursor_;

  if (opt_.prefetch && cursor_ < num_batches()) {
    pending_index_ = cursor_;
    // the worker reads order_ and writes only pending_ / pending_error_, which this thread
    // touches again only after join_worker()
    worker_ = std::thread([this, b = cursor_] {
      try {
        pending_ = build(order_, epoch_, b);
      } catch (...) {
        pending_error_ = std::current_exception();
      }
    });
  }
  return true;
}

// ---- few-shot and VTAB-1k splits

std::vector<int64_t> few_shot_indices(const Dataset& dataset, int64_t k, uint64_t seed) {
  if (k <= 0) throw ValueError("few_shot: shots must be positive (got " + std::to_string(k) + "). Hint: --shots 16");
  const int64_t K = dataset.num_classes();
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(K));
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const int64_t y = dataset.label(i);
    if (y < 0 || y >= K)
      throw ValueError("few_shot: example " + std::to_string(i) + " has label " + std::to_string(y) + " (expected [0, " +
                       std::to_string(K) + "))");
    by_class[static_cast<size_t>(y)].push_back(i);
  }
  const std::vector<std::string> names = dataset.class_names();
  std::vector<int64_t> out;
  for (int64_t c = 0; c < K; ++c) {
    auto& members = by_class[static_cast<size_t>(c)];
    if (static_cast<int64_t>(members.size()) < k)
      throw ValueError("few_shot: class '" + names[static_cast<size_t>(c)] + "' (" + std::to_string(c) + ") has " +
                       std::to_string(members.size()) + " examples (expected >= " + std::to_string(k) +
                       "). Hint: lower --shots or add data");
    // one stream per class: the picks of a class do not depend on the other classes' sizes
    Generator g(stream_seed(seed ^ kFewShotTag, static_cast<uint64_t>(c)));
    const std::vector<int64_t> perm = random_permutation(static_cast<int64_t>(members.size()), g);
    for (int64_t j = 0; j < k; ++j) out.push_back(members[static_cast<size_t>(perm[static_cast<size_t>(j)])]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

TrainValIndices train800_val200(const Dataset& dataset, uint64_t seed, int64_t n_train, int64_t n_val) {
  if (n_train <= 0 || n_val <= 0)
    throw ValueError("train800_val200: sizes must be positive (got " + std::to_string(n_train) + " and " +
                     std::to_string(n_val) + ")");
  const int64_t n = dataset.size();
  if (n < 2) throw ValueError("train800_val200: need at least 2 examples (got " + std::to_string(n) + ")");
  if (n < n_train + n_val) {  // keep the 800:200 proportion, using every example
    n_train = std::clamp<int64_t>(n * n_train / (n_train + n_val), 1, n - 1);
    n_val = n - n_train;
  }
  Generator g(stream_seed(seed ^ kSplitTag, 0));
  const std::vector<int64_t> perm = random_permutation(n, g);
  TrainValIndices s;
  s.train.assign(perm.begin(), perm.begin() + n_train);
  s.val.assign(perm.begin() + n_train, perm.begin() + n_train + n_val);
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.val.begin(), s.val.end());
  return s;
}

}  // namespace peft::data
