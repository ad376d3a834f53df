// `peft predict`: top-k classes with probabilities for image files, preprocessed as the model's
// checkpoint says, written as CSV.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "data/preprocess.h"
#include "nn/vit.h"

namespace peft {

struct Prediction {
  std::string file;
  std::vector<int64_t> classes;     // top-k label indices, most probable first
  std::vector<double> probabilities;  // softmax of the logits
};

// The image files a --data argument names: a folder (searched recursively, sorted, images by
// extension: png, jpg, jpeg, bmp) or files. IOError naming the path when it is missing or holds
// no image.
std::vector<std::string> image_files(const std::vector<std::string>& paths);

// Any classifier: normalised images [B, C, S, S] -> logits [B, K] (called without gradients).
using ImageClassifier = std::function<Tensor(const Tensor& images)>;

// Classifies the files in batches: each image is decoded (a large JPEG at reduced scale), passed
// through the eval transform of `p` and normalised with p.norm; probabilities are the softmax.
std::vector<Prediction> predict_files(const ImageClassifier& classify, const data::Preprocess& p, int64_t in_chans,
                                      const std::vector<std::string>& files, int64_t topk, int64_t batch = 32);
// A ViT with a head, in eval mode, with its config's preprocessing (effective_preprocess).
std::vector<Prediction> predict_files(nn::VisionTransformer& model, const std::vector<std::string>& files, int64_t topk,
                                      int64_t batch = 32);

// CSV: file,class_1,prob_1,...,class_k,prob_k with class names (or the index when `names` is
// empty); fields that need it are quoted. Written atomically.
void write_predictions_csv(const std::string& path, const std::vector<Prediction>& preds,
                           const std::vector<std::string>& names);

}  // namespace peft
