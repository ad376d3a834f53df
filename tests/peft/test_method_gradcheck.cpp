// gradcheck_method (peft gradcheck's library code): every row of a correct method passes, the
// glob selects rows, and a wrong backward fails.
#include <gtest/gtest.h>

#include "autograd/backward.h"
#include "core/error.h"
#include "peft/method_gradcheck.h"

namespace peft {
namespace {

nn::ViTConfig tiny() {
  nn::ViTConfig c;
  c.image_size = 8; c.patch_size = 4; c.dim = 8; c.depth = 1; c.heads = 2; c.num_classes = 3;
  return c;
}

TEST(MethodGradcheck, LoraRowsPassAndTheInputIsChecked) {
  MethodGradcheckRequest r;
  r.config = tiny();
  r.method = "lora";
  r.options.rank = 2;
  int64_t announced = 0;
  int rows_seen = 0;
  MethodGradcheckReport rep = gradcheck_method(r, [&](int64_t e) { announced = e; }, [&](const MethodGradcheckRow&) { ++rows_seen; });
  EXPECT_TRUE(rep.ok());
  ASSERT_EQ(rep.rows.size(), 5u);  // lora_A, lora_B, head.weight, head.bias, the input
  EXPECT_EQ(rows_seen, 5);
  EXPECT_EQ(rep.rows.front().name, "blocks.0.attn.qkv.lora_A");
  EXPECT_EQ(rep.rows.back().name, "input (images)");
  EXPECT_EQ(announced, rep.elements);
  EXPECT_EQ(rep.elements, 2 * 8 + 24 * 2 + 3 * 8 + 3 + 2 * 3 * 8 * 8);
}

TEST(MethodGradcheck, GlobSelectsAndABrokenBackwardFails) {
  MethodGradcheckRequest r;
  r.config = tiny();
  r.method = "ssf";
  r.tensors = "*norm1*";
  r.input = false;
  MethodGradcheckReport rep = gradcheck_method(r);
  ASSERT_EQ(rep.rows.size(), 2u);  // blocks.0.norm1.ssf_scale, .ssf_shift
  EXPECT_TRUE(rep.ok());
  set_debug_grad_scale("layer_norm", 1.05);
  rep = gradcheck_method(r);
  clear_debug_grad_scale();
  EXPECT_FALSE(rep.ok());
  r.tensors = "nothing*";
  EXPECT_THROW(gradcheck_method(r), ValueError);
}

}  // namespace
}  // namespace peft
