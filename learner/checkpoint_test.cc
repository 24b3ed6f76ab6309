// Checkpoints and the group journal: a resumed trainer takes exactly the step the
// uninterrupted one takes; corrupt and half-written checkpoints are skipped; torn
// journal tails are tolerated and corrupt records are not.
#include "learner/checkpoint.h"

#include <filesystem>
#include <fstream>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "learner/group_journal.h"
#include "learner/trainer.h"
#include "model/checkpoint.h"
#include "model/model_test_util.h"
#include "model/safetensors.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::learner {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<model::Transformer> TinyModel(uint64_t seed = 7) {
  model::TransformerOptions o;
  o.seed = seed;
  o.init_std = 0.1;
  auto m = model::Transformer::Create(model::testing::SmallQwen2Config(), o);
  EXPECT_TRUE(m.ok()) << m.status();
  return *std::move(m);
}

// A group of two one-step trajectories with different rewards.
v1::TrajectoryGroup Group(const std::string& id, uint32_t salt) {
  v1::TrajectoryGroup g;
  g.set_group_id(id);
  g.set_actor_id("a");
  g.set_data_cursor(salt);
  for (int r = 0; r < 2; ++r) {
    v1::Trajectory* t = g.add_trajectories();
    t->set_trajectory_id(id + "-" + std::to_string(r));
    for (uint32_t i = 0; i < 6; ++i) {
      t->add_token_ids((salt * 7 + i * 3 + r) % 48);
      t->add_behavior_logprobs(i < 3 ? 0.0f : -3.5f);
    }
    v1::Step* s = t->add_steps();
    s->add_context()->set_end(3);
    s->mutable_action()->set_begin(3);
    s->mutable_action()->set_end(6);
    s->set_reward(static_cast<float>(r));
    t->set_total_reward(static_cast<float>(r));
    t->set_ending_reason(v1::ENDING_REASON_SUBMITTED);
  }
  return g;
}

TrainerOptions Options() {
  TrainerOptions o;
  o.lr = 1e-2;
  o.advantages.estimator = "grpo";
  o.warmup_steps = 3;
  return o;
}

void Checkpoint(const std::string& root, Trainer& trainer, model::Transformer& m,
                uint64_t version, int keep = 3) {
  RankState state;
  state.decisions = {{"g1", 1}, {"g2", 3}};
  state.data_cursors = {{"a", 9}};
  ASSERT_TRUE(WriteRankState(root, trainer.step(), 0, state).ok());
  ASSERT_TRUE(WriteModelState(root, trainer.step(), m, trainer.optimizer(), "",
                              "run:\n  seed: 1\n")
                  .ok());
  ASSERT_TRUE(CommitCheckpoint(root, trainer.step(), version, 1, keep).ok());
}

// Steps 1..3, a checkpoint after each (version step + 1), keeping two.
void ThreeCheckpoints(const std::string& root, Trainer& trainer,
                      model::Transformer& m) {
  for (int s = 1; s <= 3; ++s) {
    ASSERT_TRUE(trainer.Step({Group("g" + std::to_string(s), s)}).ok());
    Checkpoint(root, trainer, m, s + 1, /*keep=*/2);
  }
}

TEST(CheckpointTest, ResumedTrainerTakesTheSameStep) {
  testutil::TempDir tmp("nbrl-ckpt-");
  const std::string& root = tmp.path();
  auto m = TinyModel();
  auto trainer = Trainer::Create(m.get(), nullptr, nullptr, Options());
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Step({Group("g1", 1), Group("g2", 2)}).ok());
  ASSERT_TRUE((*trainer)->Step({Group("g3", 3)}).ok());
  Checkpoint(root, **trainer, *m, 3);
  auto uninterrupted = (*trainer)->Step({Group("g4", 4), Group("g5", 5)});
  ASSERT_TRUE(uninterrupted.ok());

  // A new process: model from the checkpoint folder, optimizer and step restored.
  std::vector<std::string> skipped;
  auto info = FindLatestCheckpoint(root, &skipped);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(skipped.empty());
  EXPECT_EQ(info->step, 2);
  EXPECT_EQ(info->version, 3u);
  auto m2 = model::LoadTransformer(info->dir);
  ASSERT_TRUE(m2.ok()) << m2.status();
  auto t2 = Trainer::Create(m2->get(), nullptr, nullptr, Options());
  ASSERT_TRUE(t2.ok());
  ASSERT_TRUE(LoadOptimizerState(*info, (*t2)->optimizer()).ok());
  (*t2)->set_step(info->step);
  auto resumed = (*t2)->Step({Group("g4", 4), Group("g5", 5)});
  ASSERT_TRUE(resumed.ok());

  EXPECT_EQ(resumed->step, uninterrupted->step);
  EXPECT_DOUBLE_EQ(resumed->lr, uninterrupted->lr);
  EXPECT_NEAR(resumed->loss, uninterrupted->loss, 1e-6);
  model::TensorMap a = m->StateDict(), b = (*m2)->StateDict();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    EXPECT_TRUE(torch::allclose(t, b.at(name), 1e-6, 1e-7)) << name;
  }
  auto state = ReadRankState(*info, 0);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->decisions.at("g2"), 3);
  EXPECT_EQ(state->data_cursors.at("a"), 9u);
  EXPECT_TRUE(fs::exists(info->dir + "/run_config.yaml"));
}

TEST(CheckpointTest, CorruptAndUnfinishedCheckpointsAreSkipped) {
  testutil::TempDir tmp("nbrl-ckpt-");
  const std::string& root = tmp.path();
  auto m = TinyModel();
  auto trainer = Trainer::Create(m.get(), nullptr, nullptr, Options());
  ASSERT_TRUE(trainer.ok());
  ThreeCheckpoints(root, **trainer, *m);
  // keep=2: step 1 is gone.
  EXPECT_FALSE(fs::exists(CheckpointDir(root, 1)));
  ASSERT_TRUE(fs::exists(CheckpointDir(root, 2)));
  // A crash mid-write of step 4 leaves only a .tmp folder.
  ASSERT_TRUE(common::MakeDirectories(CheckpointDir(root, 4) + ".tmp").ok());
  // Step 3's optimizer state is damaged on disk.
  {
    std::fstream f(CheckpointDir(root, 3) + "/optimizer.pt",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x55');
  }
  std::vector<std::string> skipped;
  auto info = FindLatestCheckpoint(root, &skipped);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->step, 2);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("optimizer.pt fails its CRC-32C check"), std::string::npos)
      << skipped[0];

  // A truncated manifest is named too.
  ASSERT_TRUE(
      common::WriteFileAtomically(CheckpointDir(root, 2) + "/manifest.json", "{\"fo")
          .ok());
  skipped.clear();
  auto none = FindLatestCheckpoint(root, &skipped);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_NE(skipped[1].find("is not a valid manifest"), std::string::npos)
      << skipped[1];
}

TEST(CheckpointTest, OptimizerOfAnotherModelIsAClearError) {
  testutil::TempDir tmp("nbrl-ckpt-");
  const std::string& root = tmp.path();
  auto m = TinyModel();
  auto trainer = Trainer::Create(m.get(), nullptr, nullptr, Options());
  ASSERT_TRUE(trainer.ok());
  ASSERT_TRUE((*trainer)->Step({Group("g1", 1)}).ok());
  Checkpoint(root, **trainer, *m, 2);
  auto info = FindLatestCheckpoint(root, nullptr);
  ASSERT_TRUE(info.ok());

  model::ModelConfig c = m->config();
  c.num_hidden_layers = 1;
  auto other = model::Transformer::Create(c, {});
  ASSERT_TRUE(other.ok());
  auto t2 = Trainer::Create(other->get(), nullptr, nullptr, Options());
  ASSERT_TRUE(t2.ok());
  absl::Status st = LoadOptimizerState(*info, (*t2)->optimizer());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("optimizer.pt"), std::string::npos) << st;
}

TEST(GroupJournalTest, ReadsBackWholeRecordsAndToleratesATornTail) {
  testutil::TempDir tmp("nbrl-ckpt-");
  const std::string path = tmp.path() + "/j/from-step-00000000.log";
  auto j = GroupJournal::Create(path, /*sync=*/true);
  ASSERT_TRUE(j.ok()) << j.status();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*j)->Append(Group("g" + std::to_string(i), i)).ok());
  }
  EXPECT_EQ((*j)->records(), 3u);
  auto all = GroupJournal::Read(path);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->groups.size(), 3u);
  EXPECT_FALSE(all->torn_tail);
  EXPECT_EQ(all->groups[2].group_id(), "g2");
  EXPECT_EQ(all->groups[1].trajectories(1).token_ids_size(), 6);

  // A crash in the middle of the last append.
  const auto size = fs::file_size(path);
  fs::resize_file(path, size - 5);
  auto torn = GroupJournal::Read(path);
  ASSERT_TRUE(torn.ok()) << torn.status();
  EXPECT_EQ(torn->groups.size(), 2u);
  EXPECT_TRUE(torn->torn_tail);

  // A damaged record before the end is data loss, named by offset.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(12);
    f.put('\x01');
  }
  auto bad = GroupJournal::Read(path);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
  EXPECT_NE(bad.status().message().find("record at byte 0"), std::string::npos);
}

TEST(GroupJournalTest, OneSyncCoversEveryRecordWrittenBeforeIt) {
  testutil::TempDir tmp("nbrl-ckpt-");
  auto j = GroupJournal::Create(tmp.path() + "/j.log", /*sync=*/true);
  ASSERT_TRUE(j.ok()) << j.status();
  for (int i = 0; i < 3; ++i) {
    auto record = (*j)->Write(Group("g" + std::to_string(i), i));
    ASSERT_TRUE(record.ok()) << record.status();
    EXPECT_EQ(*record, static_cast<uint64_t>(i + 1));
  }
  EXPECT_EQ((*j)->syncs(), 0u);
  ASSERT_TRUE((*j)->SyncThrough(1).ok());
  EXPECT_EQ((*j)->syncs(), 1u);
  ASSERT_TRUE((*j)->SyncThrough(3).ok());  // already covered by the first
  EXPECT_EQ((*j)->syncs(), 1u);
  ASSERT_TRUE((*j)->Append(Group("g3", 3)).ok());
  EXPECT_EQ((*j)->syncs(), 2u);
  auto all = GroupJournal::Read(tmp.path() + "/j.log");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->groups.size(), 4u);

  // Without sync nothing is synced, and SyncThrough returns at once.
  auto unsynced = GroupJournal::Create(tmp.path() + "/k.log", /*sync=*/false);
  ASSERT_TRUE(unsynced.ok());
  ASSERT_TRUE((*unsynced)->Append(Group("g0", 0)).ok());
  EXPECT_EQ((*unsynced)->syncs(), 0u);
}

// /dev/null takes writes and refuses fdatasync (EINVAL): a disk that loses them.
TEST(GroupJournalTest, AFailedSyncIsFinal) {
  auto j = GroupJournal::Create("/dev/null", /*sync=*/true);
  ASSERT_TRUE(j.ok()) << j.status();
  ASSERT_TRUE((*j)->Write(Group("g0", 0)).ok());
  absl::Status first = (*j)->SyncThrough(1);
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.message().find("cannot sync /dev/null"), std::string::npos) << first;
  EXPECT_EQ((*j)->syncs(), 1u);
  // Linux may report the next fdatasync as a success without the lost pages: no
  // later sync is tried, and every one returns the first failure.
  ASSERT_TRUE((*j)->Write(Group("g1", 1)).ok());
  EXPECT_EQ((*j)->SyncThrough(2), first);
  EXPECT_EQ((*j)->Rename("/dev/null"), first);
  EXPECT_EQ((*j)->syncs(), 1u);
}

TEST(GroupJournalTest, AJournalFailureStopsTheIngestor) {
  IngestorOptions io;
  io.max_staleness = 100;
  for (const char* device : {"/dev/null", "/dev/full"}) {  // sync fails; write fails
    SCOPED_TRACE(device);
    Ingestor ingestor(io, nullptr);
    auto j = GroupJournal::Create(device, /*sync=*/true);
    ASSERT_TRUE(j.ok()) << j.status();
    ingestor.SetJournal(std::move(*j));
    auto ack = ingestor.Offer(Group("g0", 10), 1, absl::InfiniteFuture());
    ASSERT_EQ(ack.status().code(), absl::StatusCode::kUnavailable) << ack.status();
    EXPECT_NE(ack.status().message().find("cannot journal the group"),
              std::string::npos)
        << ack.status();
    EXPECT_EQ(ingestor.failure(), ack.status());
    // No group is acknowledged after the failure, and no checkpoint is taken.
    auto later = ingestor.Offer(Group("g1", 11), 1, absl::InfiniteFuture());
    EXPECT_EQ(later.status(), ack.status());
    testutil::TempDir dir("nbrl-ckpt-");
    auto next = GroupJournal::Create(dir.path() + "/next.log", false);
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(ingestor.Checkpoint(std::move(*next)).status(), ack.status());
    // The trainer's wait ends at once: the ingestor is closed.
    EXPECT_LE(ingestor.Take(4, 4, absl::InfiniteFuture()).size(), 1u);
  }
}

TEST(GroupJournalTest, IngestorJournalsAcceptedGroupsAndReplaysOnce) {
  testutil::TempDir tmp("nbrl-ckpt-");
  const std::string& dir = tmp.path();
  IngestorOptions io;
  io.max_staleness = 100;
  Ingestor first(io, nullptr);
  auto j = GroupJournal::Create(dir + "/a.log", false);
  ASSERT_TRUE(j.ok());
  first.SetJournal(std::move(*j));
  for (int i = 0; i < 3; ++i) {
    auto ack =
        first.Offer(Group("g" + std::to_string(i), 10 + i), 1, absl::InfiniteFuture());
    ASSERT_TRUE(ack.ok());
    ASSERT_EQ(ack->result(), v1::GroupAck::RESULT_ACCEPTED);
  }
  ASSERT_EQ(first.Take(1, 1, absl::InfiniteFuture()).size(), 1u);  // trained: g0
  // Checkpoint: the new journal starts with the two still queued.
  auto next = GroupJournal::Create(dir + "/b.log", false);
  ASSERT_TRUE(next.ok());
  auto state = first.Checkpoint(std::move(*next));
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->data_cursors.at("a"), 12u);
  ASSERT_TRUE(first.Offer(Group("g3", 13), 1, absl::InfiniteFuture()).ok());

  // Resume: both journals replayed (g1, g2 appear in both), each group once.
  std::vector<v1::TrajectoryGroup> replay;
  for (const char* name : {"/a.log", "/b.log"}) {
    auto c = GroupJournal::Read(dir + name);
    ASSERT_TRUE(c.ok());
    for (auto& g : c->groups) replay.push_back(g);
  }
  Ingestor second(io, nullptr);
  // Only journals from the checkpoint on are replayed; a.log predates it.
  replay.erase(replay.begin(), replay.begin() + 3);
  auto queued = second.Restore(*state, replay);
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(*queued, 3u);  // g1, g2, g3
  auto taken = second.Take(3, 3, absl::InfiniteFuture());
  ASSERT_EQ(taken.size(), 3u);
  EXPECT_EQ(taken[0].group_id(), "g1");
  EXPECT_EQ(taken[2].group_id(), "g3");
  // A re-send of an acknowledged group is a duplicate, counted once.
  auto again = second.Offer(Group("g0", 10), 1, absl::InfiniteFuture());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->result(), v1::GroupAck::RESULT_DUPLICATE);
  EXPECT_EQ(second.DataCursor("a").value_or(0), 13u);
}

TEST(CheckpointLockTest, ASecondLearnerOfTheSameRankIsRefused) {
  testutil::TempDir tmp("nbrl-ckpt-");
  const std::string& root = tmp.path();
  auto first = CheckpointLock::Acquire(root, 0);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = CheckpointLock::Acquire(root, 0);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(std::to_string(::getpid())),
            std::string::npos)
      << second.status();
  EXPECT_TRUE(CheckpointLock::Acquire(root, 1).ok());  // another rank
  first->reset();
  EXPECT_TRUE(CheckpointLock::Acquire(root, 0).ok());  // released with the process
}

TEST(CheckpointTest, ACommitSetsAsideAnAbandonedFuture) {
  testutil::TempDir tmp("nbrl-ckpt-");
  const std::string& root = tmp.path();
  auto m = TinyModel();
  auto trainer = Trainer::Create(m.get(), nullptr, nullptr, Options());
  ASSERT_TRUE(trainer.ok());
  ThreeCheckpoints(root, **trainer, *m);
  ASSERT_TRUE(common::MakeDirectories(CheckpointDir(root, 9) + ".tmp").ok());
  // The learner resumed from step 1 (say 2 and 3 failed verification) and now
  // commits step 2 again: step 3 belongs to the abandoned future.
  (*trainer)->set_step(2);
  Checkpoint(root, **trainer, *m, 9, /*keep=*/2);
  EXPECT_FALSE(fs::exists(CheckpointDir(root, 3)));
  EXPECT_FALSE(fs::exists(CheckpointDir(root, 9) + ".tmp"));
  int aside = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.path().filename().string().rfind("abandoned-step-00000003-", 0) == 0) ++aside;
  }
  EXPECT_EQ(aside, 1);
  auto info = FindLatestCheckpoint(root, nullptr);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->step, 2);
  EXPECT_EQ(info->version, 9u);
}

}  // namespace
}  // namespace nbrl::learner
