// safetensors files: a validating reader (pread: a file truncated while being read is an IOError,
// never SIGBUS) and an atomic writer.
//
// Layout: u64 little-endian header length N, N bytes of JSON header
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}   (optional, string -> string)
// then the raw little-endian tensor bytes; offsets are relative to the start of that data.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace peft {

// One header entry, as stored in the file.
struct SafetensorsInfo {
  std::string dtype;  // safetensors name: "F32", "F64", "F16", "BF16", "I64", "I32", ...
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data section
};

// An open safetensors file. The whole header is validated by open(), so a file that opens is
// internally consistent: every tensor's byte range lies inside the file, matches its dtype and
// shape, and overlaps no other tensor. Copies share one open file descriptor; get() reads the
// tensor's bytes then (IOError naming the tensor when the file has shrunk since open()).
class SafetensorsFile {
 public:
  // Opens `path` read-only and validates its header; throws IOError naming the file (and the
  // tensor at fault) when it is missing, truncated or corrupt.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  size_t size() const { return entries_.size(); }
  std::vector<std::string> names() const;  // in header order
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // Throws IOError for an unknown name.
  const SafetensorsInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A fresh tensor with the values of `name`:
  //   F32, F64, F16, BF16           -> `want` (f32 or f64); F16/BF16 decode exactly
  //   I64, I32, I16, I8, U32, U16, U8, BOOL -> i64 (`want` is ignored: ask for DType::i64)
  // Throws IOError for an unknown name or an unsupported dtype (U64, F8_*), DTypeError when a
  // float tensor is asked for as i64.
  Tensor get(const std::string& name, DType want = DType::f32) const;

 private:
  struct Source;
  std::string path_;
  std::shared_ptr<const Source> src_;  // the open file (tensors are read with pread, not mapped)
  uint64_t data_offset_ = 0;           // start of the data section in the file
  std::vector<std::pair<std::string, SafetensorsInfo>> entries_;
  std::map<std::string, size_t> index_;  // name -> position in entries_
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` in the given order (F32 for float32, F64 for float64, I64 for int64; any
// layout, stored in logical row-major order) with optional metadata. The header is padded with
// spaces so the data section starts 8-byte aligned. Atomic (see core/atomic_file.h): on failure
// an existing file is left untouched. Duplicate, empty or reserved names throw ValueError.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace peft
