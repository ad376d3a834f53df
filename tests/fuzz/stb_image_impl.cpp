// stb_image compiled into the image fuzzer with coverage + sanitizer instrumentation. The
// library build links Debian's prebuilt libstb, which libFuzzer cannot see into; these
// definitions (same header, same version) take precedence over the shared library's, so the
// fuzzer explores and ASan checks the decoder that data::decode_image really calls.
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
