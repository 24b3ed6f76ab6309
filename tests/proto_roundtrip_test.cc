// The wire messages survive serialization exactly, stay compact (packed token
// arrays), and keep fields they do not know (so a newer peer's additions pass
// through an older one).
#include <google/protobuf/util/message_differencer.h>

#include "gtest/gtest.h"
#include "nbrl/v1/learner.pb.h"
#include "nbrl/v1/sandbox.pb.h"

namespace nbrl {
namespace {

using google::protobuf::util::MessageDifferencer;

v1::TrajectoryGroup MakeGroup(int rollouts, int tokens) {
  v1::TrajectoryGroup g;
  g.set_group_id("actor3-000042");
  g.set_actor_id("node0/actor3");
  g.set_dataset("world-train");
  g.set_example_id("q17");
  g.set_task_family("qa_search");
  g.set_data_cursor(42);
  for (int r = 0; r < rollouts; ++r) {
    v1::Trajectory* t = g.add_trajectories();
    t->set_trajectory_id("actor3-000042-" + std::to_string(r));
    for (int i = 0; i < tokens; ++i) {
      t->add_token_ids(static_cast<uint32_t>((i * 7919 + r) % 151643));
      t->add_behavior_logprobs(i % 3 ? -0.125f * static_cast<float>(i % 17) : 0.0f);
    }
    v1::Step* s = t->add_steps();
    v1::TokenSpan* ctx = s->add_context();
    ctx->set_begin(0);
    ctx->set_end(tokens / 2);
    s->mutable_action()->set_begin(tokens / 2);
    s->mutable_action()->set_end(tokens * 3 / 4);
    s->mutable_observation()->set_begin(tokens * 3 / 4);
    s->mutable_observation()->set_end(tokens);
    s->set_policy_version(7);
    for (auto [name, value] : {std::pair{"format", 1.0f}, {"execution", 0.5f}}) {
      v1::RewardComponent* c = s->add_rewards();
      c->set_name(name);
      c->set_value(value);
    }
    s->set_well_formed(true);
    s->set_executed_ok(r % 2 == 0);
    s->mutable_generate_time()->set_nanos(1500000);
    t->set_has_final_answer(true);
    t->set_final_answer("Zarnow Institute");
    t->set_ending_reason(v1::ENDING_REASON_SUBMITTED);
    v1::RewardComponent* em = t->add_final_rewards();
    em->set_name("em");
    em->set_value(r == 0 ? 1.0f : 0.0f);
    t->set_total_reward(r == 0 ? 1.5f : 0.5f);
  }
  return g;
}

TEST(ProtoRoundTripTest, TrajectoryGroupSurvivesExactly) {
  v1::TrajectoryGroup g = MakeGroup(/*rollouts=*/4, /*tokens=*/300);
  std::string wire;
  ASSERT_TRUE(g.SerializeToString(&wire));
  v1::TrajectoryGroup back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_TRUE(MessageDifferencer::Equals(g, back));
  EXPECT_EQ(back.trajectories(2).token_ids(299), g.trajectories(2).token_ids(299));
  EXPECT_EQ(back.trajectories(1).behavior_logprobs(5), -0.625f);
}

TEST(ProtoRoundTripTest, TokenArraysArePacked) {
  // Packed: about 2-3 bytes per token id and 4 per log-prob, not a tag per element.
  v1::TrajectoryGroup g = MakeGroup(/*rollouts=*/1, /*tokens=*/10000);
  size_t bytes = g.ByteSizeLong();
  EXPECT_LT(bytes, 10000u * (3 + 4) + 1000);
  EXPECT_GT(bytes, 10000u * (1 + 4));
}

TEST(ProtoRoundTripTest, WeightChunksCarryManifestOffsetsAndChecksums) {
  v1::WeightChunk first;
  first.set_version(12);
  v1::WeightManifest* m = first.mutable_manifest();
  m->set_version(12);
  m->set_step(120);
  v1::TensorInfo* t = m->add_tensors();
  t->set_name("model.layers.0.self_attn.q_proj.weight");
  t->set_dtype(v1::DTYPE_BF16);
  t->add_shape(896);
  t->add_shape(896);
  t->set_offset(0);
  t->set_num_bytes(896 * 896 * 2);
  m->set_total_bytes(896 * 896 * 2);
  m->set_crc32c(0xdeadbeef);
  first.set_offset(0);
  first.set_data(std::string(1 << 20, '\x5a'));
  first.set_crc32c(0x12345678);
  std::string wire = first.SerializeAsString();
  v1::WeightChunk back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_TRUE(MessageDifferencer::Equals(first, back));
  EXPECT_TRUE(back.has_manifest());
  EXPECT_EQ(back.manifest().tensors(0).shape(1), 896);
  EXPECT_EQ(back.crc32c(), 0x12345678u);

  v1::WeightChunk later;
  later.set_version(12);
  later.set_offset(1 << 20);
  later.set_last(true);
  ASSERT_TRUE(back.ParseFromString(later.SerializeAsString()));
  EXPECT_FALSE(back.has_manifest());
  EXPECT_TRUE(back.last());
}

TEST(ProtoRoundTripTest, ExecuteResponseWithNotepadAndVariables) {
  v1::ExecuteResponse r;
  r.set_stdout("3\n");
  r.set_result("'Zarnow'");
  r.set_termination(v1::CELL_TERMINATION_COMPLETED);
  r.mutable_error()->set_name("KeyError");
  r.mutable_error()->set_traceback("Traceback (most recent call last):\n...");
  v1::TodoItem* todo = r.mutable_notepad()->add_todos();
  todo->set_id(1);
  todo->set_text("find the founder");
  todo->set_status(v1::TODO_STATUS_DONE);
  r.mutable_notepad()->add_facts("founded 1871");
  r.mutable_notepad()->set_draft("Zarnow");
  r.set_has_final_answer(true);
  r.set_final_answer("Zarnow");
  v1::Variable* v = r.add_variables();
  v->set_name("hits");
  v->set_type("list");
  v->set_size("len=5");
  v->set_preview("[{'id': 'd1', ...");
  v1::ToolCall* call = r.add_tool_calls();
  call->set_tool("web_search");
  call->set_ok(true);
  v1::ExecuteResponse back;
  ASSERT_TRUE(back.ParseFromString(r.SerializeAsString()));
  EXPECT_TRUE(MessageDifferencer::Equals(r, back));
}

TEST(ProtoRoundTripTest, UnknownFieldsArePreserved) {
  // A newer peer adds field 99; an older one parses and re-sends the message.
  v1::GroupAck ack;
  ack.set_group_id("g1");
  ack.set_result(v1::GroupAck::RESULT_ACCEPTED);
  std::string wire = ack.SerializeAsString();
  wire.push_back(static_cast<char>(((99 << 3 | 2) & 0x7f) | 0x80));
  wire.push_back(static_cast<char>((99 << 3 | 2) >> 7));
  wire.push_back(3);
  wire += "new";
  v1::GroupAck parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.group_id(), "g1");
  EXPECT_EQ(parsed.SerializeAsString(), wire);
}

TEST(ProtoRoundTripTest, TruncatedBytesAreRejected) {
  v1::TrajectoryGroup g = MakeGroup(/*rollouts=*/2, /*tokens=*/50);
  std::string wire = g.SerializeAsString();
  v1::TrajectoryGroup back;
  EXPECT_FALSE(back.ParseFromString(wire.substr(0, wire.size() - 7)));
}

TEST(ProtoRoundTripTest, UnknownEnumValuesSurvive) {
  // An ending reason added later arrives as an unrecognised number and is kept.
  v1::Trajectory t;
  t.set_ending_reason(static_cast<v1::EndingReason>(42));
  v1::Trajectory back;
  ASSERT_TRUE(back.ParseFromString(t.SerializeAsString()));
  EXPECT_EQ(static_cast<int>(back.ending_reason()), 42);
  EXPECT_FALSE(v1::EndingReason_IsValid(back.ending_reason()));
}

}  // namespace
}  // namespace nbrl
