// Atomic file replacement: write a temp file beside the target, fsync it, rename it over the target.
#pragma once
#include <cstddef>
#include <cstdio>
#include <functional>
#include <string>

namespace peft {

// Writes `path` so that readers see either the old file or the complete new one, never a torn
// one (a crash or an exception mid-write leaves the old file in place).
//
// `writer` gets a FILE* open for binary writing on the temp file "<path>.tmp.<pid>" in the same
// directory (rename is atomic only within one file system). Afterwards the stream is checked,
// flushed, fsync'ed and renamed over `path`.
//
// On any failure the temp file is removed and an existing `path` is left untouched. An exception
// thrown by `writer` propagates unchanged; I/O failures throw IOError naming `path`.
void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& writer);

// Writes `n` bytes to `f` or throws IOError naming `path` (for use inside a writer).
void write_bytes(std::FILE* f, const void* data, size_t n, const std::string& path);

// Convenience for small text files (metrics, configs): the whole content in one atomic write.
void write_text_atomic(const std::string& path, const std::string& content);

}  // namespace peft
