// The parity helpers every vision method test shares: the committed PyTorch fixtures in
// tests/fixtures/peft/<case>/ (adapter.safetensors with the method and options in its metadata,
// expected.safetensors) run through `peft check`'s code path.
#pragma once
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "nn/checkpoint.h"
#include "core/io/safetensors.h"
#include "peft/method.h"
#include "peft/methods/vision_check.h"
#include "tests/testing.h"

namespace peft::testing {

inline const std::string kPeftFixtures = std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/peft/";

// The check request of fixture `name`: its method and options from the adapter's metadata, the
// shared base weights and batch.
inline VisionCheckRequest fixture_request(const std::string& name) {
  SafetensorsFile f = SafetensorsFile::open(kPeftFixtures + name + "/adapter.safetensors");
  VisionCheckRequest r;
  r.method = method_from_metadata(f.metadata(), r.options);
  r.config = kPeftFixtures + f.metadata().at("config");
  r.weights = kPeftFixtures + "base.safetensors";
  r.adapter = kPeftFixtures + name + "/adapter.safetensors";
  r.inputs = kPeftFixtures + "batch.safetensors";
  return r;
}

// Every expected tensor matches (1e-4 abs + 1e-3 rel, methods.md "What must match") and the result
// has exactly the expected grad. entries: the method's trainable set under the interop names.
inline void expect_matches_reference(const std::string& name) {
  SCOPED_TRACE(name);
  nn::NamedTensors got = run_vision_check(fixture_request(name));
  auto want = nn::read_tensors(kPeftFixtures + name + "/expected.safetensors");
  std::set<std::string> got_names, want_names;
  for (auto& [n, _] : got) got_names.insert(n);
  for (auto& [n, _] : want) want_names.insert(n);
  EXPECT_EQ(got_names, want_names);
  for (auto& [n, t] : got) {
    auto it = want.find(n);
    if (it == want.end()) continue;
    ASSERT_EQ(t.sizes(), it->second.sizes()) << n;
    EXPECT_TRUE(allclose(t, it->second, 1e-3, 1e-4)) << n << ": max abs diff " << max_abs_diff(t, it->second);
  }
}

}  // namespace peft::testing
