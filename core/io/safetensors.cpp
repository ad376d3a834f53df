// safetensors reader (pread + full header validation + dtype decoding) and atomic writer.
#include "core/io/safetensors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"

namespace peft {

// Tensor bytes are copied straight into native floats and ints.
static_assert(std::endian::native == std::endian::little, "safetensors.cpp assumes a little-endian host");

// ordered_json keeps the header's key order, so names() reports tensors in file order.
using ojson = nlohmann::ordered_json;

namespace {

// Same cap as the reference implementation: a larger header is corruption, not a model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeSpec {
  const char* name;
  size_t size;
};
constexpr DTypeSpec kDTypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},  {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8},  {"U64", 8},
};

const DTypeSpec* find_dtype(const std::string& name) {
  for (const DTypeSpec& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

bool is_float_dtype(const std::string& dt) { return dt == "F32" || dt == "F64" || dt == "F16" || dt == "BF16"; }
bool is_int_dtype(const std::string& dt) {
  return dt == "I64" || dt == "I32" || dt == "I16" || dt == "I8" || dt == "U32" || dt == "U16" || dt == "U8" ||
         dt == "BOOL";
}

[[noreturn]] void fail(const std::string& path, const std::string& problem, const std::string& hint) {
  throw IOError("safetensors: '" + path + "': " + problem + ". Hint: " + hint);
}

const char* kCorruptHint = "the file is truncated or corrupt; re-export it";

std::string shape_text(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Unaligned little-endian loads: tensor data in the file has no alignment guarantee.
template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// IEEE binary16 -> binary32, exact for every input (subnormals, infinities, NaN payloads).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h >> 15) << 31;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));  // inf / NaN
  float mag;
  if (exp == 0) {
    mag = std::ldexp(static_cast<float>(man), -24);  // zero and subnormals: man * 2^-24
  } else {
    mag = std::ldexp(static_cast<float>(man | 0x400), static_cast<int>(exp) - 25);  // 1.man * 2^(exp-15)
  }
  return sign ? -mag : mag;
}

// bfloat16 is the top half of a binary32, so widening is a shift.
float bf16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

template <class T>
void decode_float(const std::string& dt, const unsigned char* src, T* dst, int64_t n) {
  if (dt == "F32") {
    if constexpr (std::is_same_v<T, float>) {
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(load<float>(src + 4 * i));
    }
  } else if (dt == "F64") {
    if constexpr (std::is_same_v<T, double>) {
      std::memcpy(dst, src, static_cast<size_t>(n) * 8);
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(load<double>(src + 8 * i));
    }
  } else if (dt == "F16") {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(half_to_float(load<uint16_t>(src + 2 * i)));
  } else {  // BF16
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(bf16_to_float(load<uint16_t>(src + 2 * i)));
  }
}

template <class S>
void widen_ints(const unsigned char* src, int64_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int64_t>(load<S>(src + sizeof(S) * i));
}

void decode_int(const std::string& dt, const unsigned char* src, int64_t* dst, int64_t n) {
  if (dt == "I64") std::memcpy(dst, src, static_cast<size_t>(n) * 8);
  else if (dt == "I32") widen_ints<int32_t>(src, dst, n);
  else if (dt == "I16") widen_ints<int16_t>(src, dst, n);
  else if (dt == "I8") widen_ints<int8_t>(src, dst, n);
  else if (dt == "U32") widen_ints<uint32_t>(src, dst, n);
  else if (dt == "U16") widen_ints<uint16_t>(src, dst, n);
  else if (dt == "U8") widen_ints<uint8_t>(src, dst, n);
  else  // BOOL: any non-zero byte is true
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i] != 0;
}

// Parses the header text, reporting the first repeated key: nlohmann keeps only one of two equal
// keys, which would silently drop a tensor.
ojson parse_header(const std::string& path, const char* begin, const char* end) {
  std::vector<std::set<std::string>> open_objects;  // keys seen so far in each enclosing object
  std::string duplicate, duplicate_in, last_top_key;
  auto on_event = [&](int, ojson::parse_event_t ev, ojson& parsed) {
    if (ev == ojson::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (ev == ojson::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (ev == ojson::parse_event_t::key && !open_objects.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      bool top = open_objects.size() == 1;
      if (!open_objects.back().insert(key).second && duplicate.empty()) {
        duplicate = key;
        duplicate_in = top ? "" : last_top_key;
      }
      if (top) last_top_key = key;
    }
    return true;
  };
  ojson header;
  try {
    header = ojson::parse(begin, end, on_event);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("header is not valid JSON (") + e.what() + ")", kCorruptHint);
  }
  if (!duplicate.empty()) {
    if (duplicate_in.empty())
      fail(path, "duplicate tensor name '" + duplicate + "' in header", "each tensor name must appear once");
    fail(path, "entry '" + duplicate_in + "' repeats key '" + duplicate + "'", kCorruptHint);
  }
  if (!header.is_object())
    fail(path, std::string("header is not a JSON object (got ") + header.type_name() + ")", kCorruptHint);
  return header;
}

}  // namespace

// ---- reader

// The open file. Tensor bytes are read with pread into the tensors, not through a memory map: a
// file truncated by another process while mapped killed the reader with SIGBUS (issue 20); a read
// that comes up short is an IOError instead. Copies of a SafetensorsFile share the descriptor.
struct SafetensorsFile::Source {
  int fd = -1;
  uint64_t size = 0;  // bytes when opened
  Source(int f, uint64_t s) : fd(f), size(s) {}
  ~Source() { ::close(fd); }
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;
};

namespace {
// Reads exactly `len` bytes at `offset`; `what` names the part for the error.
void read_exact(const std::string& path, int fd, uint64_t size_when_opened, uint64_t offset, void* dst, uint64_t len,
                const std::string& what) {
  auto* p = static_cast<unsigned char*>(dst);
  while (len > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(len, uint64_t{1} << 30));
    const ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(path, "cannot read " + what + " (" + std::strerror(errno) + ")", "check the file and the disk");
    if (got == 0)
      fail(path,
           "the file ended at byte " + std::to_string(offset) + " while reading " + what + " (it was " +
               std::to_string(size_when_opened) + " bytes when opened)",
           "was it truncated or rewritten while being read? Run again on a complete file");
    p += got;
    offset += static_cast<uint64_t>(got);
    len -= static_cast<uint64_t>(got);
  }
}
}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;

  // -- open the file
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // O_NONBLOCK: a FIFO does not hang open()
  if (fd < 0) fail(path, std::string("cannot open (") + std::strerror(errno) + ")", "check the path and permissions");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file", "pass the path of a .safetensors file");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  f.src_ = std::make_shared<const Source>(fd, static_cast<uint64_t>(st.st_size));  // closes fd from here on
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size == 0) fail(path, "file is empty (0 bytes, expected at least the 8-byte header length)", kCorruptHint);
  if (file_size < 8)
    fail(path, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length",
         kCorruptHint);
  unsigned char len_bytes[8];
  read_exact(path, fd, file_size, 0, len_bytes, 8, "the header length");

  // -- header length and text
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeaderBytes)
    fail(path,
         "header length " + std::to_string(n) + " is absurdly large (limit " + std::to_string(kMaxHeaderBytes) +
             " bytes, file is " + std::to_string(file_size) + " bytes)",
         "this is not a safetensors file, or its first 8 bytes are corrupt");
  if (n > file_size - 8)
    fail(path,
         "header length " + std::to_string(n) + " runs past the end of the file (file is " +
             std::to_string(file_size) + " bytes, so at most " + std::to_string(file_size - 8) + ")",
         kCorruptHint);
  std::string text(static_cast<size_t>(n), '\0');
  read_exact(path, fd, file_size, 8, text.data(), n, "the header");
  ojson header = parse_header(path, text.data(), text.data() + n);
  const uint64_t data_size = file_size - 8 - n;
  f.data_offset_ = 8 + n;

  // -- entries
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const ojson& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object())
        fail(path, std::string("__metadata__ is not an object (got ") + v.type_name() + ")",
             "metadata must map strings to strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail(path,
               "__metadata__ value of '" + m.key() + "' is not a string (got " + m.value().type_name() + ")",
               "metadata must map strings to strings");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) fail(path, where + " entry is not an object (got " + v.type_name() + ")", kCorruptHint);
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!v.contains(key)) fail(path, where + " has no \"" + key + "\"", kCorruptHint);
    if (!v["dtype"].is_string())
      fail(path, where + " dtype is not a string (got " + v["dtype"].type_name() + ")", kCorruptHint);

    SafetensorsInfo info;
    info.dtype = v["dtype"].get<std::string>();
    const DTypeSpec* spec = find_dtype(info.dtype);
    if (!spec)
      fail(path, where + " has unknown dtype '" + info.dtype + "'",
           "safetensors dtypes are F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL F8_E5M2 F8_E4M3");

    const ojson& shape = v["shape"];
    if (!shape.is_array()) fail(path, where + " shape is not a list (got " + shape.type_name() + ")", kCorruptHint);
    std::vector<uint64_t> dims;
    uint64_t numel = 1;
    bool overflow = false;
    for (const ojson& d : shape) {
      if (d.is_number_integer() && !d.is_number_unsigned())
        fail(path, where + " has negative dimension " + std::to_string(d.get<int64_t>()) + " in its shape",
             kCorruptHint);
      if (!d.is_number_unsigned())
        fail(path, where + " shape holds a non-integer (" + d.dump() + ")", "dimensions are non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) overflow = true;
      dims.push_back(dim);
      overflow = overflow || __builtin_mul_overflow(numel, dim, &numel);
    }
    uint64_t need = 0;
    overflow = overflow || __builtin_mul_overflow(numel, spec->size, &need);
    if (overflow) fail(path, where + " shape " + shape_text(dims) + " is too large", kCorruptHint);

    const ojson& offs = v["data_offsets"];
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      fail(path, where + " data_offsets is not two non-negative integers (got " + offs.dump() + ")", kCorruptHint);
    info.begin = offs[0].get<uint64_t>();
    info.end = offs[1].get<uint64_t>();
    const std::string range = fmt::format("[{}, {}]", info.begin, info.end);
    if (info.begin > info.end) fail(path, where + " data_offsets " + range + " has begin > end", kCorruptHint);
    if (info.end > data_size)
      fail(path,
           where + " data_offsets " + range + " run past the end of the data (data section is " +
               std::to_string(data_size) + " bytes)",
           kCorruptHint);
    if (info.end - info.begin != need)
      fail(path,
           where + " byte size does not match its dtype and shape (got " + std::to_string(info.end - info.begin) +
               " bytes in data_offsets " + range + ", expected " + std::to_string(need) + " for " + info.dtype +
               " " + shape_text(dims) + ")",
           kCorruptHint);
    for (uint64_t dim : dims) info.shape.push_back(static_cast<int64_t>(dim));
    f.index_[name] = f.entries_.size();
    f.entries_.emplace_back(name, std::move(info));
  }

  // -- no two tensors may share bytes (empty tensors own none)
  std::vector<size_t> order;
  for (size_t i = 0; i < f.entries_.size(); ++i)
    if (f.entries_[i].second.end > f.entries_[i].second.begin) order.push_back(i);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f.entries_[a].second.begin < f.entries_[b].second.begin; });
  for (size_t k = 1; k < order.size(); ++k) {
    const auto& prev = f.entries_[order[k - 1]];
    const auto& cur = f.entries_[order[k]];
    if (cur.second.begin < prev.second.end)
      fail(path,
           fmt::format("tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", prev.first, prev.second.begin,
                       prev.second.end, cur.first, cur.second.begin, cur.second.end),
           kCorruptHint);
  }
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.first);
  return out;
}

const SafetensorsInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    std::string listing;
    for (size_t i = 0; i < entries_.size() && i < 5; ++i) listing += (i ? ", " : ": ") + entries_[i].first;
    if (entries_.size() > 5) listing += ", ...";
    fail(path_,
         "no tensor named '" + name + "' (the file has " + std::to_string(entries_.size()) + " tensors" + listing +
             ")",
         "names are case-sensitive; call names() to list them");
  }
  return entries_[it->second].second;
}

Tensor SafetensorsFile::get(const std::string& name, DType want) const {
  const SafetensorsInfo& e = info(name);
  const int64_t n = shape_numel(e.shape);
  const std::string what = "tensor '" + name + "'";
  const uint64_t at = data_offset_ + e.begin;
  const size_t esize = find_dtype(e.dtype)->size;
  // Bytes already in the wanted layout are read straight into the tensor; others are read and
  // decoded in chunks (a bounded temporary, not a copy of the whole tensor).
  auto read_decoded = [&](auto* dst, auto decode) {
    constexpr int64_t kChunkBytes = 256 << 10;  // stays in L2 between the read and the decode
    const int64_t per = std::max<int64_t>(1, kChunkBytes / static_cast<int64_t>(esize));
    std::vector<unsigned char> buf(static_cast<size_t>(std::min(n, per)) * esize);
    for (int64_t done = 0; done < n; done += per) {
      const int64_t k = std::min(per, n - done);
      read_exact(path_, src_->fd, src_->size, at + static_cast<uint64_t>(done) * esize, buf.data(),
                 static_cast<uint64_t>(k) * esize, what);
      decode(buf.data(), dst + done, k);
    }
  };
  if (is_float_dtype(e.dtype)) {
    if (want == DType::i64)
      throw DTypeError("safetensors: '" + path_ + "': tensor '" + name + "' is " + e.dtype +
                       ", cannot load it as int64. Hint: ask for DType::f32 or DType::f64");
    Tensor out = empty_uninitialized(e.shape, want);
    if ((e.dtype == "F32" && want == DType::f32) || (e.dtype == "F64" && want == DType::f64)) {
      read_exact(path_, src_->fd, src_->size, at, out.raw_data(), e.end - e.begin, what);
      return out;
    }
    dispatch_float(want, "safetensors", [&](auto tag) {
      using T = decltype(tag);
      read_decoded(out.data<T>(), [&](const unsigned char* src, T* dst, int64_t k) { decode_float<T>(e.dtype, src, dst, k); });
    });
    return out;
  }
  if (is_int_dtype(e.dtype)) {
    Tensor out = empty_uninitialized(e.shape, DType::i64);
    if (e.dtype == "I64") {
      read_exact(path_, src_->fd, src_->size, at, out.raw_data(), e.end - e.begin, what);
      return out;
    }
    read_decoded(out.data<int64_t>(),
                 [&](const unsigned char* src, int64_t* dst, int64_t k) { decode_int(e.dtype, src, dst, k); });
    return out;
  }
  fail(path_, "tensor '" + name + "' has dtype " + e.dtype + ", which this framework cannot load",
       "store floats as F32/F64/F16/BF16 and integers as I64/I32");
}

// ---- writer

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string op = "save_safetensors: '" + path + "': ";
  ojson header = ojson::object();
  if (!metadata.empty()) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::vector<Tensor> payload;  // contiguous, in the order they are written
  std::map<std::string, size_t> seen;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    if (name.empty()) throw ValueError(op + "tensor " + std::to_string(i) + " has an empty name. Hint: name it");
    if (name == "__metadata__")
      throw ValueError(op + "'__metadata__' is reserved and cannot name a tensor. Hint: rename tensor " +
                       std::to_string(i));
    if (!t.defined())
      throw ValueError(op + "tensor '" + name + "' is undefined. Hint: pass a tensor that holds data");
    auto [pos, fresh] = seen.emplace(name, i);
    if (!fresh)
      throw ValueError(op + "duplicate tensor name '" + name + "' (positions " + std::to_string(pos->second) +
                       " and " + std::to_string(i) + "). Hint: each name may appear once");
    Tensor c = t.is_contiguous() ? t : t.clone();  // logical row-major order on disk
    const char* dt = t.dtype() == DType::f32 ? "F32" : t.dtype() == DType::f64 ? "F64" : t.dtype() == DType::bf16 ? "BF16" : "I64";
    const uint64_t nbytes = c.nbytes();
    ojson entry = ojson::object();
    entry["dtype"] = dt;
    entry["shape"] = ojson::array();
    for (int64_t d : c.shape()) entry["shape"].push_back(d);
    entry["data_offsets"] = ojson::array({offset, offset + nbytes});
    header[name] = std::move(entry);
    offset += nbytes;
    payload.push_back(std::move(c));
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(op + "cannot encode the header (" + e.what() + "). Hint: names and metadata must be UTF-8");
  }
  // Pad with spaces (valid JSON whitespace) so the data section starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');

  write_file_atomic(path, [&](std::FILE* f) {
    unsigned char len[8];
    const uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    write_bytes(f, len, 8, path);
    write_bytes(f, text.data(), text.size(), path);
    for (const Tensor& c : payload) write_bytes(f, c.raw_data(), c.nbytes(), path);
  });
}

}  // namespace peft
