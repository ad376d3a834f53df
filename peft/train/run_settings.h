// What a training run was started with, recorded in its checkpoint so that --resume can refuse
// to continue it with other settings (issue 20: another seed, batch, lr, data or base weights
// was accepted without a word), and the --epochs / --extend rule of a resumed run (issue 19).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/dataset.h"

namespace peft {

struct TrainConfig;

// One setting as the user sees it: the flag ("--lr") or a name ("--data images"), and its value
// as text. Compared as text: the values are printed with full precision.
struct RunSetting {
  std::string name, value;
};
using RunSettings = std::vector<RunSetting>;

// A resume that does not match the run (the CLI reports it as bad usage, exit 2).
struct ResumeMismatch : ValueError {
  using ValueError::ValueError;
};

// The settings of a run: the method and its options (`method_metadata`, e.g. adapter_metadata's
// "rank"; "class_names" is left out: the data's classes are their own entry), the training
// options of `t` that change its result (seed, batch, lr, weight decay, schedule, optimizer,
// augmentation, ...; not --epochs, which has its own rule, nor threads or progress), the data
// (--data and --val as given, resolved to absolute paths when they exist; the number of training
// images and their class names) and the model: `config_json` and, when `weights` is a file, its
// size and content hash (core/file_hash.h).
RunSettings run_settings(const TrainConfig& t, const std::map<std::string, std::string>& method_metadata,
                         const std::string& data, const std::string& val, const data::Dataset& train,
                         const std::string& config_json, const std::string& weights);

// As stored in the checkpoint's metadata ("run": a JSON object) and back.
std::string settings_to_json(const RunSettings& s);
RunSettings settings_from_json(const std::string& json);

// Checks a --resume of the run in `out_dir` against this call before any training. Nothing to
// check (returns "") when there is no checkpoint (the trainer reports that) or the checkpoint
// records no settings (written before they were recorded). Throws ResumeMismatch, one line:
//  - a setting that differs, naming it with the run's value and this call's;
//  - --epochs other than the run's without --extend (its schedule depends on the total);
//    a finished run asked for fewer epochs is fine (it says it is finished and changes nothing);
//  - --extend with --epochs not above the run's.
// With --extend and more epochs, returns the note to print: the schedule (same kind, peak,
// minimum and warm-up) is recomputed for the new total and continues from the current update, so
// the epochs already trained keep the learning rates they had.
std::string check_resume(const std::string& out_dir, const RunSettings& now, int64_t epochs, bool extend,
                         const std::string& sched);

// The files a train / pretrain run writes into its --out folder (names and patterns for
// clear_previous_run in core/out_dir.h).
const std::vector<std::string>& training_run_files();

}  // namespace peft
