// Training checkpoint: "param.<name>", "optim.<slot>", "progress" [epoch, step], "partial"
// (f64 running sums), "progress_time" (f64 seconds), "rng" (dropout generator), "extra.<name>".
#include "peft/train/checkpoint.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>

#include "autograd/anomaly.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/checkpoint.h"
#include "core/io/safetensors.h"

namespace peft {

namespace fs = std::filesystem;

namespace {

Tensor rng_tensor(const Generator& g) {
  auto s = g.state();
  std::vector<int64_t> v(4);
  std::memcpy(v.data(), s.data(), sizeof(uint64_t) * 4);
  return from_vector_i64(v, {4});
}

std::array<uint64_t, 4> rng_from(const Tensor& t) {
  std::array<uint64_t, 4> s{};
  auto v = t.to_vector<int64_t>();
  std::memcpy(s.data(), v.data(), sizeof(uint64_t) * 4);
  return s;
}

bool all_finite(const std::vector<nn::ParamSpec>& groups) {
  for (auto& g : groups)
    if (autograd::count_non_finite(g.param) > 0) return false;
  return true;
}

}  // namespace

TrainCheckpoint::TrainCheckpoint(const std::string& out_dir)
    : path_(out_dir.empty() ? "" : (fs::path(out_dir) / "checkpoint.safetensors").string()) {}

bool TrainCheckpoint::exists() const { return !path_.empty() && fs::exists(path_); }

std::string TrainCheckpoint::state() const {
  return exists() ? "the last checkpoint " + path_ + " is intact" : std::string("no checkpoint was written yet");
}

void TrainCheckpoint::save(const std::vector<nn::ParamSpec>& groups, const nn::Optimizer& opt, const Generator& gen,
                           const TrainPosition& pos, const std::vector<std::pair<std::string, Tensor>>& extra,
                           const std::map<std::string, std::string>& metadata) const {
  if (path_.empty() || !all_finite(groups)) return;
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& g : groups) out.emplace_back("param." + g.name, g.param);
  for (auto& [n, t] : opt.state_dict()) out.emplace_back("optim." + n, t);
  out.emplace_back("progress", from_vector_i64({pos.epoch, pos.step}, {2}));
  const EpochSums& p = pos.partial;
  out.emplace_back("partial",
                   from_vector({p.loss_sum, static_cast<double>(p.correct), static_cast<double>(p.seen)}, {3}, DType::f64));
  out.emplace_back("progress_time", from_vector({pos.elapsed_s}, {}, DType::f64));
  out.emplace_back("rng", rng_tensor(gen));
  for (auto& [n, t] : extra) out.emplace_back("extra." + n, t);
  std::map<std::string, std::string> md = metadata;
  md["format"] = "peft-train-checkpoint";
  save_safetensors(path_, out, md);
}

TrainPosition TrainCheckpoint::load(std::vector<nn::ParamSpec>& groups, nn::Optimizer& opt, Generator& gen,
                                    std::map<std::string, Tensor>* extra) const {
  if (!exists()) throw IOError(fmt::format("--resume: no checkpoint at '{}'", path_));
  auto sd = nn::read_tensors(path_);
  std::map<std::string, Tensor> params, optim;
  for (auto& [n, t] : sd) {
    if (n.rfind("param.", 0) == 0) params[n.substr(6)] = t;
    if (n.rfind("optim.", 0) == 0) optim[n.substr(6)] = t;
    if (extra && n.rfind("extra.", 0) == 0) (*extra)[n.substr(6)] = t;
  }
  {
    NoGradGuard ng;
    for (auto& g : groups) {
      auto it = params.find(g.name);
      if (it == params.end()) throw IOError(fmt::format("{}: no tensor for trainable '{}'", path_, g.name));
      if (it->second.sizes() != g.param.sizes())  // another --rank, --prompts, ... (issue 20)
        throw IOError(fmt::format("--resume: {}: tensor 'param.{}' is {} but this run's {} is {}: the run was started "
                                  "with other method options. Hint: resume with that run's options or use a fresh --out",
                                  path_, g.name, shape_str(it->second.sizes()), g.name, shape_str(g.param.sizes())));
      g.param.copy_(it->second);
    }
  }
  opt.load_state_dict(optim);
  TrainPosition pos;
  pos.epoch = static_cast<int64_t>(sd.at("progress").at({0}));
  pos.step = static_cast<int64_t>(sd.at("progress").at({1}));
  // Running sums are float64 in the file; read_tensors converts floats to float32.
  SafetensorsFile f = SafetensorsFile::open(path_);
  auto partial = f.get("partial", DType::f64).to_vector<double>();
  pos.partial = {partial[0], static_cast<int64_t>(partial[1]), static_cast<int64_t>(partial[2])};
  pos.elapsed_s = f.get("progress_time", DType::f64).item();
  gen.set_state(rng_from(sd.at("rng")));
  return pos;
}

}  // namespace peft
