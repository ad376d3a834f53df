// The README example: a tiny MLP learns XOR-like circles with the tape and AdamW.
#pragma once
#include "autograd/ops.h"
#include "core/random.h"
#include "nn/linear.h"
#include "nn/optim/optimizer.h"

// Trains a 2-32-2 MLP to tell points inside the unit circle from points outside; returns the
// final training accuracy (the test asserts it is above 95%).
inline double train_mlp_toy(int steps = 300) {
  using namespace peft;
  Generator gen(0);
  Tensor x = rand({256, 2}, gen, DType::f32, -1.5, 1.5);                 // inputs [B, 2]
  std::vector<int64_t> y(256);
  for (int64_t i = 0; i < 256; ++i) y[i] = x.at({i, 0}) * x.at({i, 0}) + x.at({i, 1}) * x.at({i, 1}) < 1.0;
  Tensor labels = from_vector_i64(y, {256});
  nn::Linear fc1(2, 32, true, gen), fc2(32, 2, true, gen);
  peft::nn::NamedTensors params = fc1.named_parameters(), p2 = fc2.named_parameters();
  params.insert(params.end(), p2.begin(), p2.end());
  nn::AdamW opt(nn::param_groups(params, 0.0), 0.05);
  for (int step = 0; step < steps; ++step) {
    Tensor loss = cross_entropy(fc2.forward(relu(fc1.forward(x))), labels);  // forward on the tape
    opt.zero_grad();
    backward(loss);                                                            // reverse sweep
    opt.step();
  }
  NoGradGuard no_grad;
  Tensor pred = argmax(fc2.forward(relu(fc1.forward(x))), 1);
  int64_t correct = 0;
  for (int64_t i = 0; i < 256; ++i) correct += static_cast<int64_t>(pred.at({i})) == y[i];
  return static_cast<double>(correct) / 256.0;
}
