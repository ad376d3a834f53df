// A committed JSON fixture (tests/fixtures/NAME), parsed once per name; a missing file is an
// IOError naming the reference script that writes it.
#pragma once
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace peft::testing {

inline const nlohmann::json& json_fixture(const std::string& name, const std::string& script) {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  std::ifstream f(std::string(PEFT_SOURCE_DIR) + "/tests/fixtures/" + name);
  if (!f) throw IOError("cannot open tests/fixtures/" + name + ". Hint: run " + script);
  return cache.emplace(name, nlohmann::json::parse(f)).first->second;
}

}  // namespace peft::testing
