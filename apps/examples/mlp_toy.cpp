// Runs the README example and prints its accuracy.
#include <cstdio>

#include "apps/examples/mlp_toy.h"

int main() {
  double acc = train_mlp_toy();
  std::printf("MLP on the circle task: train accuracy %.1f%%\n", 100.0 * acc);
  return acc > 0.95 ? 0 : 1;
}
