// dist::World as a single process (no mpirun): rank 0 of 1, every collective the identity, so
// a plain run behaves exactly as it did before MPI support. The multi-rank behaviour is tested
// by tests/mpi/mpi_world_probe.cpp under mpirun.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/distributed.h"
#include "core/error.h"

namespace {

using peft::dist::World;

TEST(Distributed, SingleProcessWorld) {
  ASSERT_FALSE(peft::dist::launched_by_mpi()) << "run this test without mpirun";
  World& w = World::get();
  EXPECT_EQ(w.rank(), 0);
  EXPECT_EQ(w.size(), 1);
  EXPECT_FALSE(w.distributed());
  EXPECT_TRUE(w.is_root());
  EXPECT_EQ(w.where(), "rank 0 of 1");
}

TEST(Distributed, CollectivesAreTheIdentityOnOneRank) {
  World& w = World::get();
  float f[3] = {1.5f, -2.0f, 3.25f};
  w.allreduce_sum(f, 3, "test");
  EXPECT_EQ(f[0], 1.5f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], 3.25f);
  double d = 7.0;
  w.allreduce_sum(&d, 1, "test");
  EXPECT_EQ(d, 7.0);
  int v = 5;
  w.broadcast(&v, sizeof v, 0, "test");
  EXPECT_EQ(v, 5);
  w.barrier("test");
  auto all = w.gather("only", "test");
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], "only");
}

TEST(Distributed, LaunchDetectionReadsTheLauncherEnvironment) {
  // One rank announced is a single process: no MPI_Init, behaves as today.
  ::setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
  EXPECT_FALSE(peft::dist::launched_by_mpi());
  ::setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  EXPECT_TRUE(peft::dist::launched_by_mpi());
  ::unsetenv("OMPI_COMM_WORLD_SIZE");
  ::setenv("PMI_SIZE", "4", 1);
  EXPECT_TRUE(peft::dist::launched_by_mpi());
  ::unsetenv("PMI_SIZE");
  EXPECT_FALSE(peft::dist::launched_by_mpi());
}

TEST(Distributed, TimeoutFromEnvironment) {
  EXPECT_EQ(peft::dist::timeout_from_env(nullptr), 300);
  EXPECT_EQ(peft::dist::timeout_from_env(""), 300);
  EXPECT_EQ(peft::dist::timeout_from_env("2.5"), 2.5);
  for (const char* bad : {"0", "-1", "abc", "5s", "nan", "inf"}) {
    try {
      peft::dist::timeout_from_env(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const peft::ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("PEFT_DIST_TIMEOUT"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(World::get().set_timeout_s(0), peft::ValueError);
}

}  // namespace
