// Exception types of the framework; the CLI maps them to one-line messages and exit codes.
#pragma once
#include <stdexcept>
#include <string>

namespace peft {

// Base of every error the library throws on purpose. Messages follow
// "<op>: <problem> (got ..., expected ...). Hint: <fix>".
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ShapeError : Error { using Error::Error; };   // incompatible shapes, bad axis
struct DTypeError : Error { using Error::Error; };   // wrong or mixed dtypes
struct IOError : Error { using Error::Error; };      // files: missing, corrupt, truncated
struct StateError : Error { using Error::Error; };  // misuse: backward twice, stale saved tensor
struct ValueError : Error { using Error::Error; };   // bad option values, labels out of range

}  // namespace peft
