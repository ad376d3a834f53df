// The data-parallel step's parts that one process can check (issue 18): GradSync on a world of
// one rank leaves the gradients as they are and returns the batches' statistics from the same
// buffer; own_rank_stream gives every rank but 0 its own dropout stream. Across real ranks they
// are tested by tests/apps/test_mpi_cli.cpp (2 ranks = 1 process).
#include <gtest/gtest.h>

#include "peft/train/grad_sync.h"

namespace {

using namespace peft;

TEST(GradSync, OneRankKeepsTheGradientsAndReturnsTheBatchStatistics) {
  Tensor a = full({2, 3}, 0.5).requires_grad_(), b = full({4}, 1.0).requires_grad_();
  std::vector<nn::ParamSpec> groups = {{"a", a}, {"b", b}};
  GradSync sync(dist::World::get(), groups);
  // 10 values + 2 flags + 3 statistics, in float.
  EXPECT_EQ(sync.bytes_per_update(), 15 * 4);
  a.set_grad(full({2, 3}, 0.25));  // b has no gradient: it must stay without one
  sync.add_batch(1.5, 3, 4);
  sync.add_batch(0.0, 0, 0);  // an empty shard counts nothing
  sync.add_batch(2.0, 1, 2);
  const std::vector<GlobalBatchStats> s = sync.allreduce(groups);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_DOUBLE_EQ(s[0].mean_loss, 1.5);
  EXPECT_EQ(s[0].correct, 3);
  EXPECT_EQ(s[0].n, 4);
  EXPECT_EQ(s[1].n, 0);
  EXPECT_DOUBLE_EQ(s[2].mean_loss, 2.0);
  EXPECT_EQ(s[2].correct, 1);
  for (float g : a.grad().to_vector<float>()) EXPECT_EQ(g, 0.25f);
  EXPECT_FALSE(b.grad().defined());
  // The pending statistics were consumed: the next update starts empty.
  EXPECT_TRUE(sync.allreduce(groups).empty());
}

TEST(GradSync, EveryRankButZeroDrawsItsOwnDropoutStream) {
  auto draws = [](Generator g) {
    std::vector<uint64_t> v;
    for (int i = 0; i < 8; ++i) v.push_back(g.next_u64());
    return v;
  };
  const Generator shared(42);
  Generator r0 = shared, r1 = shared, r1_again = shared, r2 = shared;
  own_rank_stream(r0, 0);
  own_rank_stream(r1, 1);
  own_rank_stream(r1_again, 1);
  own_rank_stream(r2, 2);
  EXPECT_EQ(draws(r0), draws(shared));  // rank 0 draws what one process draws
  EXPECT_NE(draws(r1), draws(shared));
  EXPECT_NE(draws(r2), draws(shared));
  EXPECT_NE(draws(r1), draws(r2));
  EXPECT_EQ(draws(r1), draws(r1_again));  // seeded: the same run draws the same masks
}

}  // namespace
