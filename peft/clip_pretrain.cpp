// pretrain_clip and its loss (see clip_pretrain.h).
#include "peft/clip_pretrain.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <memory>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "data/loader.h"
#include "data/procedural.h"
#include "data/transforms.h"
#include "nn/optim/optimizer.h"

namespace peft {

Tensor clip_contrastive_loss(nn::CLIP& clip, const Tensor& images, const Tensor& tokens) {
  const int64_t B = images.size(0);
  Tensor f = l2_normalize(clip.encode_image(images));                       // [B, E]
  Tensor u = l2_normalize(clip.encode_text(tokens));                        // [B, E]
  Tensor logits = mul(matmul(f, transpose(u, 0, 1)), exp(clip.logit_scale));  // [B, B]
  Tensor target = arange(B).to(DType::i64);
  // image -> caption and caption -> image, averaged
  return mul(add(cross_entropy(logits, target), cross_entropy(transpose(logits, 0, 1), target)), 0.5);
}

ClipPretrainResult pretrain_clip(nn::CLIP& clip, const ClipPretrainConfig& c,
                                 const std::function<void(const std::string&)>& say) {
  auto ds = std::make_shared<data::ProceduralDataset>(c.task, c.images, clip.cfg.vision.image_size, c.seed,
                                                      data::Split::train);
  // Every caption tokenized once; a batch picks its rows by the images' indices.
  nn::TextTokenizer tok(clip.cfg.text, "");
  std::vector<std::string> captions;
  for (int64_t i = 0; i < c.images; ++i) captions.push_back(ds->caption(i));
  Tensor all_tokens = tok.tokenize(captions);  // [n, T]
  data::LoaderOptions lo;
  lo.batch_size = c.batch;
  lo.drop_last = true;
  lo.seed = c.seed;
  lo.transform = data::make_transform(data::parse_augment("none"), data::clip_normalization());
  data::DataLoader loader(ds, lo);
  clip.train();
  nn::AdamW opt(nn::param_groups(clip.named_parameters(), c.weight_decay), c.lr, 0.9, 0.98, 1e-6);  // CLIP's betas / eps
  const int64_t total = loader.num_batches() * c.epochs, warm = std::min<int64_t>(50, total / 5);
  int64_t step = 0;
  ClipPretrainResult r;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t e = 0; e < c.epochs; ++e) {
    loader.start_epoch(e);
    data::Batch b;
    double sum = 0;
    int64_t nb = 0;
    while (loader.next(b)) {
      opt.set_lr(nn::warmup_cosine_lr(step, warm, total, c.lr));
      Tensor loss = clip_contrastive_loss(clip, b.images, index_select(all_tokens, 0, from_vector_i64(b.indices, {c.batch})));
      opt.zero_grad();
      backward(loss);
      opt.step();
      {  // OpenAI clamps the multiplier at 100
        NoGradGuard ng;
        if (clip.logit_scale.item() > std::log(100.0)) clip.logit_scale.fill_(std::log(100.0));
      }
      sum += loss.item();
      ++nb;
      ++step;
    }
    r.epoch_loss.push_back(nb ? sum / static_cast<double>(nb) : 0.0);
    r.time_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (say)
      say(fmt::format("      epoch {}/{}  contrastive loss {:.3f}  temperature x{:.1f}  ({:.0f}s)", e + 1, c.epochs,
                      r.epoch_loss.back(), clip.logit_scale_exp(), r.time_s));
  }
  clip.eval();
  return r;
}

}  // namespace peft
