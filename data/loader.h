// DataLoader: seeded per-epoch shuffling, batching, per-sample transforms, background prefetch; few-shot splits.
#pragma once
#include <cstdint>
#include <exception>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"
#include "data/dataset.h"
#include "data/preprocess.h"
#include "data/transforms.h"

namespace peft::data {

struct Batch {
  Tensor images;                 // [B, C, S, S] float32
  Tensor labels;                 // [B] int64
  std::vector<int64_t> indices;  // the dataset index of each row
  Tensor targets;                // [B, K] float32 soft targets when the batch is mixed (data/mixup.h), else undefined
  int64_t epoch = 0, index = 0;  // which batch of which epoch this is
};

struct LoaderOptions {
  int64_t batch_size = 32;
  bool shuffle = true;
  bool drop_last = false;  // drop the last, smaller batch
  uint64_t seed = 0;
  bool prefetch = true;    // build batch b+1 on a background thread while the caller uses batch b
  // Threads that load, decode and transform the rows of a batch (--workers): each takes the next
  // row until none is left, and each row's randomness is its own (seed, epoch, example) stream,
  // so a batch is bit-identical for any number of workers. With prefetch the workers build batch
  // b+1 while the caller trains on batch b, and batches come out in order.
  int64_t workers = 1;
  // image (already S x S) + a generator seeded per (seed, epoch, example) -> [C, S, S].
  // Empty: to_tensor() without augmentation or normalisation.
  Transform transform;
  // Hand the transform Dataset::load_original(i) (any size) instead of load(i) (S x S): for
  // transforms that crop the original, e.g. make_transform(a, p) with a.rrc. Needs a transform.
  bool original_images = false;
  // Data parallelism (issue 18): this process builds only its part of each batch, rows
  // [b + len * shard / shards, b + len * (shard + 1) / shards) of the batch's len rows. The
  // order and the per-example randomness stay those of the whole batch, so the shards of all
  // ranks together are exactly the batch one process would build.
  int64_t shard = 0, shards = 1;
};

// The pipeline of a Preprocess and an --augment list: transform = make_transform(a, p) and
// original_images = a.rrc (the random resized crop is taken from the original image).
void set_pipeline(LoaderOptions& o, const Augment& a, const Preprocess& p);

// Batches of one epoch, in an order that depends only on (seed, epoch): a run resumed at
// (epoch, batch) sees exactly the batches the uninterrupted run would have seen, and the
// per-example augmentation randomness depends only on (seed, epoch, example), so prefetching
// changes nothing. The dataset must not change while a loader uses it.
//
//   DataLoader loader(ds, opts);
//   for (int64_t e = 0; e < epochs; ++e) {
//     loader.start_epoch(e);
//     Batch b;
//     while (loader.next(b)) { ... }
//   }
class DataLoader {
 public:
  DataLoader(DatasetPtr dataset, LoaderOptions options);
  ~DataLoader();  // waits for a running prefetch
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return opt_; }
  int64_t num_batches() const;  // per epoch

  // Begins `epoch` at batch `first_batch` (0 to num_batches()).
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the current epoch; false once the epoch is exhausted. An exception from
  // the dataset or the transform (also one raised on the prefetch thread) propagates from here.
  bool next(Batch& out);

  // The example order of an epoch (a seeded permutation, or 0..n-1 without shuffle).
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Batch b of `epoch`, built on the calling thread (what next() returns for it).
  Batch make_batch(int64_t epoch, int64_t b) const;

 private:
  Batch build(const std::vector<int64_t>& order, int64_t epoch, int64_t b) const;
  // Row r of a batch: example i loaded, transformed and written to dst (C * S * S floats).
  void build_row(int64_t i, int64_t epoch, float* dst) const;
  void join_worker();  // waits for the prefetch thread; keeps its result or exception

  DatasetPtr dataset_;
  LoaderOptions opt_;
  int64_t epoch_ = 0, cursor_ = 0;  // next batch to hand out
  std::vector<int64_t> order_;
  bool started_ = false;

  std::thread worker_;
  int64_t pending_index_ = -1;  // batch the worker builds (or built), -1 when none
  Batch pending_;
  std::exception_ptr pending_error_;
};

// The rows [first, second) of a batch of `len` rows that shard `shard` of `shards` takes.
std::pair<int64_t, int64_t> shard_rows(int64_t len, int64_t shard, int64_t shards);

// A random permutation of 0..n-1 (Fisher-Yates).
std::vector<int64_t> random_permutation(int64_t n, Generator& gen);

// k examples of every class, chosen with a seeded shuffle of each class's examples; returned in
// ascending index order. Throws ValueError naming the class when it has fewer than k examples.
std::vector<int64_t> few_shot_indices(const Dataset& dataset, int64_t k, uint64_t seed);

// VTAB-1k style split: disjoint seeded subsets of n_train and n_val examples (800 / 200). A
// dataset with fewer than n_train + n_val examples is split in the same proportion instead.
struct TrainValIndices {
  std::vector<int64_t> train, val;
};
TrainValIndices train800_val200(const Dataset& dataset, uint64_t seed, int64_t n_train = 800, int64_t n_val = 200);

}  // namespace peft::data
