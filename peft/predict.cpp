// Prediction on image files: decode, eval transform, batch, softmax, top-k, CSV.
#include "peft/predict.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "data/image.h"
#include "data/preprocess.h"
#include "data/transforms.h"

namespace peft {

namespace {

namespace fs = std::filesystem;

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

std::vector<std::string> image_files(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file() && is_image_name(it->path())) found.push_back(it->path().string());
      if (ec) throw IOError(fmt::format("--data {}: cannot list the folder ({})", p, ec.message()));
      if (found.empty()) throw IOError(fmt::format("--data {}: no image files (png, jpg, jpeg, bmp) in the folder", p));
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::is_regular_file(p, ec)) {
      out.push_back(p);
    } else {
      throw IOError(fmt::format("--data {}: no such file or folder", p));
    }
  }
  return out;
}

std::vector<Prediction> predict_files(const ImageClassifier& classify, const data::Preprocess& p, int64_t in_chans,
                                      const std::vector<std::string>& files, int64_t topk, int64_t batch) {
  if (topk <= 0) throw ValueError(fmt::format("--topk must be positive (got {})", topk));
  if (batch <= 0) throw ValueError(fmt::format("predict: batch must be positive (got {})", batch));
  const int64_t C = in_chans, S = p.size;
  NoGradGuard ng;
  std::vector<Prediction> out;
  for (size_t start = 0; start < files.size(); start += static_cast<size_t>(batch)) {
    const size_t n = std::min(files.size() - start, static_cast<size_t>(batch));
    Tensor images = empty({static_cast<int64_t>(n), C, S, S});  // contiguous float32, filled in place
    for (size_t i = 0; i < n; ++i) {
      const std::string& f = files[start + i];
      data::Image img = data::load_image_reduced(f, C, data::eval_resize_short_side(p));
      data::to_chw(data::eval_transform(img, p), p.norm, images.data<float>() + i * static_cast<size_t>(C * S * S));
    }
    Tensor logits = classify(images).to(DType::f32);
    const int64_t K = logits.size(1), k = std::min(topk, K);
    std::vector<float> prob = softmax(logits, -1).to_vector<float>();
    for (size_t i = 0; i < n; ++i) {
      const float* row = prob.data() + i * static_cast<size_t>(K);
      std::vector<int64_t> idx(static_cast<size_t>(K));
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
        return row[a] > row[b] || (row[a] == row[b] && a < b);
      });
      Prediction pr;
      pr.file = files[start + i];
      for (int64_t j = 0; j < k; ++j) {
        pr.classes.push_back(idx[static_cast<size_t>(j)]);
        pr.probabilities.push_back(row[idx[static_cast<size_t>(j)]]);
      }
      out.push_back(std::move(pr));
    }
  }
  return out;
}

std::vector<Prediction> predict_files(nn::VisionTransformer& model, const std::vector<std::string>& files, int64_t topk,
                                      int64_t batch) {
  if (!model.head) throw ValueError("predict: the model has no classifier head (give --adapter, or a checkpoint with a head)");
  const bool was_training = model.is_training();
  model.eval();
  auto out = predict_files([&](const Tensor& x) { return model.forward(x); }, nn::effective_preprocess(model.cfg),
                           model.cfg.in_chans, files, topk, batch);
  if (was_training) model.train();
  return out;
}

void write_predictions_csv(const std::string& path, const std::vector<Prediction>& preds,
                           const std::vector<std::string>& names) {
  const size_t k = preds.empty() ? 0 : preds.front().classes.size();
  std::string s = "file";
  for (size_t j = 1; j <= k; ++j) s += fmt::format(",class_{},prob_{}", j, j);
  s += "\n";
  for (const Prediction& p : preds) {
    s += csv_field(p.file);
    for (size_t j = 0; j < p.classes.size(); ++j) {
      const int64_t c = p.classes[j];
      const std::string name = c < static_cast<int64_t>(names.size()) ? names[static_cast<size_t>(c)] : std::to_string(c);
      s += fmt::format(",{},{:.6f}", csv_field(name), p.probabilities[j]);
    }
    s += "\n";
  }
  write_text_atomic(path, s);
}

}  // namespace peft
