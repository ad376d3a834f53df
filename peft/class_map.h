// Class names travel with a model: a folder's classes are mapped to the model's labels by name,
// never by position, so renamed or reordered folders cannot be scored against the wrong class.
#pragma once
#include <string>
#include <vector>

#include "data/dataset.h"

namespace peft {

// A view of `ds` whose labels are indices into `model_classes`, matched by name. Every class of
// the data must be one of the model's (a subset is fine: e.g. a validation folder missing a
// class); otherwise ValueError naming `what` (e.g. "--data") and the first unknown classes.
// When `model_classes` is empty (a model that does not know its names) `ds` is returned as it is.
data::DatasetPtr map_classes_by_name(data::DatasetPtr ds, const std::vector<std::string>& model_classes,
                                     const std::string& what);

}  // namespace peft
