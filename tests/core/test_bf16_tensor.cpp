// DType::bf16, the storage of frozen GEMM weights under --precision bf16 (nn/bf16_storage.h):
// conversion to and from float32/float64 rounds to nearest even and reads back exactly, strided
// views convert like contiguous ones, element access and printing work, a bf16 tensor cannot
// train, elementwise ops refuse it in one exception (never a wrong read), and safetensors writes
// it as BF16 and reads it back to the same values.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "autograd/ops.h"
#include "core/bf16.h"
#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/random.h"

using namespace peft;

namespace {
float rounded(float v) { return bf16::to_float(bf16::round_bits(v)); }
}  // namespace

TEST(Bf16Tensor, ConversionRoundsToNearestEvenAndReadsBackExactly) {
  Generator g(1);
  Tensor x = randn({7, 33}, g);
  Tensor b = x.to(DType::bf16);
  EXPECT_EQ(b.dtype(), DType::bf16);
  EXPECT_EQ(b.nbytes(), x.nbytes() / 2);
  EXPECT_STREQ(dtype_name(b.dtype()), "bfloat16");
  const std::vector<float> xs = x.to_vector<float>(), back = b.to(DType::f32).to_vector<float>();
  const std::vector<double> back64 = b.to(DType::f64).to_vector<double>();
  for (size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ(back[i], rounded(xs[i])) << i;
    EXPECT_EQ(back64[i], static_cast<double>(rounded(xs[i]))) << i;
  }
  EXPECT_EQ(b.at({3, 5}), static_cast<double>(rounded(x.to_vector<float>()[3 * 33 + 5])));
  // Ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
  Tensor tie = from_vector({1.0 + std::ldexp(1.0, -8), 1.0 + 3 * std::ldexp(1.0, -8)}, {2});
  EXPECT_EQ(tie.to(DType::bf16).to_vector<float>(), (std::vector<float>{1.0f, 1.0f + 4 * std::ldexp(1.0f, -8)}));
  EXPECT_NE(b.str().find("dtype=bfloat16"), std::string::npos);
}

TEST(Bf16Tensor, StridedViewsAndFillConvertLikeContiguousOnes) {
  Generator g(2);
  Tensor x = randn({6, 10}, g);
  Tensor bt = x.to(DType::bf16).as_strided({10, 6}, {1, 10}, 0);  // the transpose, a view
  Tensor want = x.as_strided({10, 6}, {1, 10}, 0).clone();
  const std::vector<float> w = want.to_vector<float>(), got = bt.to(DType::f32).to_vector<float>();
  for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(got[i], rounded(w[i]));
  Tensor c = empty({3, 4}, DType::bf16);
  c.fill_(0.1);
  EXPECT_EQ(c.at({2, 3}), static_cast<double>(rounded(0.1f)));
  Tensor f = empty({3, 4});
  f.copy_(c);  // bf16 -> f32 through copy_
  EXPECT_EQ(f.at({1, 1}), static_cast<double>(rounded(0.1f)));
}

TEST(Bf16Tensor, CannotTrainAndElementwiseOpsRefuseIt) {
  Tensor b = ones({4, 4}).to(DType::bf16);
  EXPECT_THROW(b.requires_grad_(true), DTypeError);
  EXPECT_NO_THROW(b.requires_grad_(false));
  EXPECT_THROW(add(b, b), DTypeError);
  EXPECT_THROW(mul(b, 2.0), DTypeError);
  EXPECT_THROW(sum(b), DTypeError);
  EXPECT_THROW(b.data<float>(), DTypeError);
}

TEST(Bf16Tensor, SafetensorsWritesBf16AndReadsTheSameValues) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("peft_bf16_tensor_" + std::to_string(::getpid()) + ".safetensors")).string();
  Generator g(3);
  Tensor x = randn({5, 9}, g), b = x.to(DType::bf16);
  save_safetensors(path, {{"w", b}, {"f", x}});
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.info("w").dtype, "BF16");
  EXPECT_EQ(f.info("w").end - f.info("w").begin, 2u * 45u);
  EXPECT_EQ(f.get("w").to_vector<float>(), b.to(DType::f32).to_vector<float>());
  EXPECT_EQ(f.get("f").to_vector<float>(), x.to_vector<float>());
  std::filesystem::remove(path);
}
