// A content hash of a file, to tell later whether a run's input (the base weights) is still the
// same file (--resume, issue 20). Not cryptographic: it guards against mistakes, not attacks.
#pragma once
#include <cstdint>
#include <string>

namespace peft {

// "<size> bytes, hash <16 hex digits>" of the whole file, read in 1 MiB blocks (346 MB hash
// in about 0.1 s when cached, so hashing everything costs less than loading it). IOError naming
// the file and `what` when it cannot be read.
std::string file_identity(const std::string& path, const std::string& what);

}  // namespace peft
