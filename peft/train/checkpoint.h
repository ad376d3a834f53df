// The training checkpoint (DIR/checkpoint.safetensors) behind --resume: everything needed to
// continue a run exactly where it stopped.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/random.h"
#include "nn/optim/optimizer.h"
#include "peft/train/epoch_sums.h"

namespace peft {

// Where a run stands: the next batch to train is `step` of `epoch` (0-based), with the running
// sums of that epoch so far, after `elapsed_s` seconds of training in earlier processes.
struct TrainPosition {
  int64_t epoch = 0, step = 0;
  EpochSums partial;
  double elapsed_s = 0;
};

class TrainCheckpoint {
 public:
  // out_dir "" = no checkpoint: save() does nothing and load() refuses.
  explicit TrainCheckpoint(const std::string& out_dir);

  const std::string& path() const { return path_; }
  bool exists() const;
  // For failure messages: name the checkpoint only when one exists.
  std::string state() const;

  // Writes the trainable tensors, optimizer state, position, the dropout stream and `extra`
  // (the loop's own state, e.g. the EMA weights) and `metadata` (the run's settings) atomically. Weights that are not all finite
  // are never written over the last good checkpoint: the save is skipped and the next forward
  // reports the NaN.
  void save(const std::vector<nn::ParamSpec>& groups, const nn::Optimizer& opt, const Generator& gen,
            const TrainPosition& pos, const std::vector<std::pair<std::string, Tensor>>& extra = {},
            const std::map<std::string, std::string>& metadata = {}) const;
  // Restores what save() wrote into groups, opt and gen; returns the position. Tensors whose
  // names begin with "extra." are returned in `extra` without the prefix.
  TrainPosition load(std::vector<nn::ParamSpec>& groups, nn::Optimizer& opt, Generator& gen,
                     std::map<std::string, Tensor>* extra = nullptr) const;

 private:
  std::string path_;
};

}  // namespace peft
