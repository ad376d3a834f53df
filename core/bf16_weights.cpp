// The bf16 weight cache (see bf16_weights.h): one map under a mutex (lookups come from the op
// boundaries on the calling thread, a few hundred per step, never from inside a kernel).
#include "core/bf16_weights.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "core/bf16.h"
#include "core/blas.h"

namespace peft::bf16 {

namespace {

struct Key {
  const Storage* storage;
  int64_t offset, rows, cols;
  bool operator==(const Key& o) const {
    return storage == o.storage && offset == o.offset && rows == o.rows && cols == o.cols;
  }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = std::hash<const void*>()(k.storage);
    for (int64_t v : {k.offset, k.rows, k.cols}) h = h * 1099511628211ULL ^ std::hash<int64_t>()(v);
    return h;
  }
};
struct Entry {
  std::weak_ptr<Storage> storage;  // expired: the weight is gone, the entry is dropped
  uint64_t version;                // the storage's version when rounded
  WeightCopy copy;
};

std::mutex g_mutex;
std::unordered_map<Key, Entry, KeyHash> g_cache;
uint64_t g_hits = 0, g_misses = 0;

}  // namespace

WeightCopy weight_copy(const Tensor& w) {
  if (!w.defined() || blas::precision() != blas::Precision::bf16 || !blas::bf16_supported()) return nullptr;
  if (w.dtype() != DType::f32 || w.dim() != 2 || !w.is_contiguous() || !w.is_leaf() || w.numel() == 0)
    return nullptr;
  const StoragePtr& st = w.impl()->storage;
  const Key key{st.get(), w.offset(), w.size(0), w.size(1)};
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_cache.find(key);
  if (it != g_cache.end() && !it->second.storage.expired() && it->second.version == st->version) {
    ++g_hits;
    return it->second.copy;
  }
  ++g_misses;
  // A miss: drop the entries of weights that no longer exist (their storages are freed), then
  // round this one. An entry of a changed weight is replaced below.
  for (auto e = g_cache.begin(); e != g_cache.end();) e = e->second.storage.expired() ? g_cache.erase(e) : std::next(e);
  auto rounded = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(w.numel()));
  to_bf16_parallel(w.data<float>(), w.numel(), rounded->data());  // a ViT-B fc1 weight is 2.4 M
  WeightCopy copy = rounded;
  g_cache[key] = Entry{st, st->version, copy};
  return copy;
}

WeightCacheStats weight_cache_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  WeightCacheStats s;
  for (const auto& [k, e] : g_cache)
    if (!e.storage.expired()) {
      ++s.entries;
      s.bytes += e.copy->size() * sizeof(uint16_t);
    }
  s.hits = g_hits;
  s.misses = g_misses;
  return s;
}

void clear_weight_cache() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_cache.clear();
  g_hits = g_misses = 0;
}

}  // namespace peft::bf16
