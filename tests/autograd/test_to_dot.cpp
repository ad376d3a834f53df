// to_dot: one box per recorded op, trainable and frozen leaves in their own colours, names.
#include "autograd/to_dot.h"

#include <gtest/gtest.h>

#include <sstream>

#include "autograd/backward.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tests/testing.h"

using namespace peft;
using namespace peft::autograd;

namespace {

std::vector<std::string> lines_with(const std::string& dot, const std::string& what) {
  std::vector<std::string> out;
  std::istringstream in(dot);
  for (std::string line; std::getline(in, line);)
    if (line.find(what) != std::string::npos) out.push_back(line);
  return out;
}

// The single node line whose label starts with `label` (fails the test otherwise).
std::string node_line(const std::string& dot, const std::string& label) {
  auto found = lines_with(dot, "label=\"" + label + "\\n");
  EXPECT_EQ(found.size(), 1u) << "label " << label << " in\n" << dot;
  return found.empty() ? "" : found[0];
}

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// A two-layer MLP on raw ops: loss = sum(fc2(relu(fc1(x)))).
struct TinyMlp {
  Tensor x = peft::testing::randn64({5, 3}, 1, false);
  Tensor w1 = peft::testing::randn64({4, 3}, 2), b1 = peft::testing::randn64({4}, 3);
  Tensor w2 = peft::testing::randn64({2, 4}, 4), b2 = peft::testing::randn64({2}, 5);
  std::map<const TensorImpl*, std::string> names{
      {w1.impl(), "fc1.weight"}, {b1.impl(), "fc1.bias"}, {w2.impl(), "fc2.weight"}, {b2.impl(), "fc2.bias"}};
  Tensor loss() const { return sum(linear(relu(linear(x, w1, b1)), w2, b2)); }
};

}  // namespace

TEST(ToDot, FullModelHasOneBoxPerOpAndEveryLeaf) {
  TinyMlp m;
  std::string dot = to_dot(m.loss(), m.names);
  EXPECT_TRUE(has(dot, "digraph tape {"));
  EXPECT_EQ(lines_with(dot, "shape=box").size(), 4u);  // linear, relu, linear, sum
  EXPECT_EQ(lines_with(dot, "label=\"linear\\n").size(), 2u);
  EXPECT_EQ(lines_with(dot, "shape=ellipse").size(), 5u);  // 4 parameters + the input x
  for (const char* n : {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"})
    EXPECT_TRUE(has(node_line(dot, n), kTrainableColor)) << n;
  std::string x = node_line(dot, "input");  // unnamed and frozen: dashed
  EXPECT_TRUE(has(x, kFrozenColor));
  EXPECT_TRUE(has(x, "dashed"));
  EXPECT_TRUE(has(x, "[5, 3]"));
  EXPECT_TRUE(has(dot, "4 ops"));
  // The root op is drawn thicker; the output shape of the first linear is shown.
  EXPECT_TRUE(has(node_line(dot, "sum"), "penwidth=2"));
  EXPECT_TRUE(has(dot, "label=\"linear\\n[5, 4] float64"));
}

TEST(ToDot, FrozenLeavesAreShownInTheFrozenColour) {
  TinyMlp m;
  m.w2.requires_grad_(false);
  m.b2.requires_grad_(false);
  std::string dot = to_dot(m.loss(), m.names);
  EXPECT_EQ(lines_with(dot, "shape=box").size(), 4u);  // fc1 trains, so everything after it records
  EXPECT_TRUE(has(node_line(dot, "fc1.weight"), kTrainableColor));
  EXPECT_TRUE(has(node_line(dot, "fc1.bias"), kTrainableColor));
  for (const char* n : {"fc2.weight", "fc2.bias"}) {
    std::string l = node_line(dot, n);
    EXPECT_TRUE(has(l, kFrozenColor)) << n;
    EXPECT_FALSE(has(l, kTrainableColor)) << n;
    EXPECT_FALSE(has(l, "dashed")) << n;  // named: solid
  }
}

TEST(ToDot, AFrozenTrunkIsNotOnTheTape) {
  TinyMlp m;  // linear probe: only fc2 trains, so fc1 and relu record nothing
  m.w1.requires_grad_(false);
  m.b1.requires_grad_(false);
  std::string dot = to_dot(m.loss(), m.names);
  EXPECT_EQ(lines_with(dot, "shape=box").size(), 2u);  // linear (fc2), sum
  EXPECT_FALSE(has(dot, "fc1.weight"));
  EXPECT_FALSE(has(dot, "relu"));
  EXPECT_TRUE(has(node_line(dot, "fc2.weight"), kTrainableColor));
  // fc2's input (the relu output, a temporary) is drawn as an unnamed frozen input.
  EXPECT_EQ(lines_with(dot, kFrozenColor).size(), 1u);
  EXPECT_TRUE(has(dot, "[5, 4]"));
}

TEST(ToDot, ALeafUsedTwiceIsDrawnOnceAndSavedBytesAreShown) {
  Tensor a = peft::testing::randn64({3}, 7);
  Tensor y = mul(a, a);  // saves a twice: 2 * 3 * 8 bytes
  std::string dot = to_dot(sum(y), {{a.impl(), "a"}});
  EXPECT_EQ(lines_with(dot, "shape=ellipse").size(), 1u);
  EXPECT_EQ(lines_with(dot, "-> op0").size(), 2u);  // two edges into mul, labelled 0 and 1
  EXPECT_TRUE(has(node_line(dot, "mul"), "saved 48 B"));
}

TEST(ToDot, NamesAreEscapedAndTensorNamesAreUsed) {
  Tensor a = peft::testing::randn64({2}, 8);
  a.set_name("my \"odd\" name");
  std::string dot = to_dot(sum(a));
  EXPECT_TRUE(has(dot, "my \\\"odd\\\" name")) << dot;
}

TEST(ToDot, ALeafRootAndErrors) {
  Tensor a = peft::testing::randn64({2}, 9);
  std::string dot = to_dot(a, {{a.impl(), "alone"}});
  EXPECT_TRUE(has(node_line(dot, "alone"), kTrainableColor));
  EXPECT_THROW_MSG(to_dot(Tensor()), ValueError, "to_dot");
}

TEST(ToDot, FrozenInputsKeepNothingAlive) {
  // Node::frozen_inputs holds weak pointers: a graph must not keep frozen activations alive.
  Tensor w = peft::testing::randn64({3}, 10);
  Tensor loss;
  std::weak_ptr<TensorImpl> c_weak;
  {
    Tensor c = peft::testing::randn64({3}, 11, false);
    c_weak = c.impl_ptr();
    loss = sum(add(w, c));  // add saves nothing, so only the tape could still hold c
  }
  EXPECT_TRUE(c_weak.expired());
  ASSERT_EQ(loss.grad_fn()->next.size(), 1u);
  const Node* add_node = loss.grad_fn()->next[0].node.get();
  ASSERT_EQ(add_node->frozen_inputs.size(), 1u);
  EXPECT_EQ(add_node->frozen_inputs[0].index, 1u);
  EXPECT_TRUE(has(to_dot(loss), "input (freed)"));
}

TEST(ToDot, TapeStatsCountOpsLeavesAndSavedBytes) {
  TinyMlp m;
  m.w1.requires_grad_(false);
  m.b1.requires_grad_(false);
  Tensor loss = m.loss();
  TapeStats s = tape_stats(loss);
  EXPECT_EQ(s.ops, 2);               // linear (fc2), sum
  EXPECT_EQ(s.trainable_leaves, 2);  // fc2.weight, fc2.bias
  // fc2 saves its input [5, 4] for dW (its input needs no gradient, so W is not saved); sum saves nothing.
  EXPECT_EQ(s.saved_bytes, 5u * 4u * 8u);
  EXPECT_EQ(tape_stats(m.x).ops, 0);
  EXPECT_EQ(tape_stats(Tensor()).ops, 0);
}
