// Procedural images: seeded scenes of coloured shapes on textured backgrounds, as named tasks, with captions.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace peft::data {

// The attribute vocabularies (indices into these lists are what a Scene stores).
const std::vector<std::string>& procedural_shapes();       // circle, square, triangle, cross, ring, diamond
const std::vector<std::string>& procedural_colors();       // red, green, blue, yellow, magenta, cyan, white, orange
const std::vector<std::string>& procedural_sizes();        // small, large
const std::vector<std::string>& procedural_positions();    // top left, top right, bottom left, bottom right
const std::vector<std::string>& procedural_backgrounds();  // plain, stripes, checker, noise, gradient
// Every word a caption can contain (lowercase, sorted, unique): for building a caption vocabulary.
std::vector<std::string> procedural_vocabulary();

// A named classification problem over the scenes.
struct ProceduralTask {
  std::string name;
  std::string description;
  std::vector<std::string> classes;
};
// shapes, shapes-textured, colors, count, size-position, textures, mixed.
const std::vector<ProceduralTask>& procedural_tasks();
// Throws ValueError listing the task names when `name` is unknown.
const ProceduralTask& procedural_task(const std::string& name);

// Everything needed to draw one image; coordinates are fractions of the image side, so one scene
// renders at any size.
struct Scene {
  struct Object {
    float cx = 0.5f, cy = 0.5f;  // centre
    float r = 0.2f;              // half extent
  };
  int shape = 0, color = 0, size = 0;  // indices into the vocabularies; all objects share them
  int position = 0;                    // quadrant of the (first) object's centre
  int background = 0;
  std::vector<Object> objects;         // 1 to 4
  std::array<float, 3> object_rgb{};   // the colour with a small per-image jitter
  std::array<float, 3> bg_a{}, bg_b{}; // background colours (plain uses bg_a)
  float bg_period = 0.2f;              // stripes / checker period, fraction of the side
  float bg_angle = 0;                  // stripes / gradient direction (radians)
  uint64_t noise_seed = 0;             // value-noise texture and pixel noise
  float pixel_noise = 0.02f;           // std of the additive Gaussian pixel noise
  int64_t label = 0;
};

// Draws a scene at S x S (RGB, [0, 1]); deterministic given the scene.
Image render_scene(const Scene& scene, int64_t S);
// "a photo of a small red circle in the top left on a striped background";
// "a photo of three small blue rings on a plain background".
std::string scene_caption(const Scene& scene);

// n examples of a task. Example i is drawn from a generator seeded by (seed, task, split, i):
// the same arguments always give the same images, and train/val/test are independent draws.
// Labels cycle through the classes (label = i mod K), so every class has n/K or n/K + 1 examples.
class ProceduralDataset : public Dataset {
 public:
  ProceduralDataset(const std::string& task, int64_t n, int64_t image_size, uint64_t seed, Split split,
                    int64_t in_chans = 3);
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return static_cast<int64_t>(task_->classes.size()); }
  std::vector<std::string> class_names() const override { return task_->classes; }
  int64_t image_size() const override { return image_size_; }
  int64_t channels() const override { return in_chans_; }
  int64_t label(int64_t i) const override;
  Image load(int64_t i) const override;
  std::string describe() const override;

  Scene scene(int64_t i) const;
  std::string caption(int64_t i) const;
  const ProceduralTask& task() const { return *task_; }

 private:
  const ProceduralTask* task_;
  int task_id_;
  int64_t n_, image_size_;
  uint64_t seed_;
  Split split_;
  int64_t in_chans_;
};

}  // namespace peft::data
