// The model flags every command that builds a ViT shares: --config / --weights (either may be
// omitted when the other says enough), --image-size, --heads, --act, and the preprocessing
// overrides --mean, --std, --interpolation, --crop-pct (peft/model_source.h resolves them).
#pragma once
#include <CLI/CLI.hpp>

#include "apps/peft/commands.h"
#include "peft/model_source.h"

namespace peft::app {

// config_required: pretrain (no weights to infer from). weights_required: train, merge, predict.
void add_model_options(CLI::App* cmd, ModelArgs& m, bool config_required, bool weights_required);

// open_model with its ValueErrors about missing options turned into usage errors (exit 2).
ModelSource open_model_or_usage(const ModelArgs& m);

void add_predict_command(CLI::App& app, Common& common, Runner& run);  // predict

}  // namespace peft::app
