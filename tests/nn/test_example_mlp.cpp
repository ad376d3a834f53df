// The README's MLP example is compiled and must actually learn.
#include <gtest/gtest.h>

#include "apps/examples/mlp_toy.h"

TEST(ReadmeExample, MlpLearnsTheCircle) { EXPECT_GT(train_mlp_toy(), 0.95); }
