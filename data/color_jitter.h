// torchvision's ColorJitter(brightness=F, contrast=F, saturation=F) as timm builds it from
// --color-jitter F, on the uint8 picture: the three adjustments in a random order, each factor
// uniform in [max(0, 1 - F), 1 + F]. On PIL images torchvision's adjust_brightness / contrast /
// saturation are ImageEnhance Brightness / Contrast / Color (data/pil_ops.h).
#pragma once
#include "core/random.h"
#include "data/pil_ops.h"

namespace peft::data {

// strength 0 returns the image unchanged and draws nothing (torchvision's None factors).
// Throws ValueError naming --color-jitter when strength is negative or not finite.
ImageU8 color_jitter(const ImageU8& img, double strength, Generator& gen);

}  // namespace peft::data
