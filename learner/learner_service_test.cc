// LearnerService over real gRPC on loopback: registration, trajectory ingestion
// (accept, duplicate, invalid, stale, filtered, back-pressure, the journal under
// concurrent streams) and the weight stream.
#include "learner/learner_service.h"

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <atomic>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/crc32c.h"
#include "common/weight_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/group_journal.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::learner {
namespace {

using ::testing::HasSubstr;

v1::TrajectoryGroup Group(const std::string& id, uint64_t version = 0,
                          std::vector<float> rewards = {1.0f, 0.0f}) {
  v1::TrajectoryGroup g;
  g.set_group_id(id);
  g.set_actor_id("actor-0");
  for (size_t r = 0; r < rewards.size(); ++r) {
    v1::Trajectory* t = g.add_trajectories();
    t->set_trajectory_id(id + "-" + std::to_string(r));
    for (int i = 0; i < 10; ++i) {
      t->add_token_ids(i + 1);
      t->add_behavior_logprobs(i >= 6 ? -0.5f : 0.0f);
    }
    v1::Step* s = t->add_steps();
    s->add_context()->set_end(6);
    s->mutable_action()->set_begin(6);
    s->mutable_action()->set_end(10);
    s->mutable_observation()->set_begin(10);
    s->mutable_observation()->set_end(10);
    s->set_policy_version(version);
    t->set_ending_reason(v1::ENDING_REASON_SUBMITTED);
    t->set_total_reward(rewards[r]);
  }
  return g;
}

common::WeightVersion Version(uint64_t v, size_t bytes) {
  common::WeightVersion w;
  w.bytes.assign(bytes, static_cast<char>(v));
  w.manifest.set_version(v);
  v1::TensorInfo* t = w.manifest.add_tensors();
  t->set_name("w");
  t->set_num_bytes(bytes);
  w.manifest.set_total_bytes(bytes);
  w.manifest.set_crc32c(common::Crc32c(w.bytes.data(), bytes));
  return w;
}

class LearnerServiceTest : public ::testing::Test {
 protected:
  void Start(IngestorOptions ingest = {}) {
    registry_ = std::make_shared<prometheus::Registry>();
    ingest.limits.vocab_size = 100;
    ingestor_ = std::make_unique<Ingestor>(ingest, registry_.get());
    WeightPublisherOptions wp;
    wp.chunk_bytes = 1000;
    publisher_ = std::make_unique<WeightPublisher>(wp, registry_.get());
    LearnerServiceOptions so;
    so.run_id = "test-run";
    so.queue_wait = absl::Seconds(30);
    service_ =
        std::make_unique<LearnerServiceImpl>(so, ingestor_.get(), publisher_.get());
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::LearnerService::NewStub(channel_);
  }
  void TearDown() override {
    if (ingestor_) ingestor_->Close();
    if (publisher_) publisher_->Close();
    if (server_)
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }
  // Registers `id`; returns the reply.
  v1::RegisterActorResponse Register(const std::string& id = "actor-0") {
    grpc::ClientContext ctx;
    v1::RegisterActorRequest req;
    req.set_actor_id(id);
    req.set_hostname("localhost");
    v1::RegisterActorResponse resp;
    grpc::Status st = stub_->RegisterActor(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.run_id(), "test-run");
    return resp;
  }
  grpc::Status Heartbeat(const std::string& id, v1::HeartbeatResponse* resp) {
    grpc::ClientContext ctx;
    v1::HeartbeatRequest hb;
    hb.set_actor_id(id);
    return stub_->Heartbeat(&ctx, hb, resp);
  }
  // Sends groups on one stream and returns their acks.
  // Starts the service with room for 1,000 groups, registers the actor, and gives
  // the ingestor a journal at `path` that syncs. Null on failure.
  GroupJournal* StartWithSyncedJournal(const std::string& path) {
    IngestorOptions o;
    o.capacity = 1000;
    Start(o);
    Register();
    auto j = GroupJournal::Create(path, /*sync=*/true);
    EXPECT_TRUE(j.ok()) << j.status();
    if (!j.ok()) return nullptr;
    GroupJournal* journal = j->get();
    ingestor_->SetJournal(std::move(*j));
    return journal;
  }

  std::vector<v1::GroupAck> Push(const std::vector<v1::TrajectoryGroup>& groups,
                                 grpc::Status* status = nullptr) {
    grpc::ClientContext ctx;
    auto stream = stub_->PushTrajectories(&ctx);
    std::vector<v1::GroupAck> acks;
    for (const auto& g : groups) {
      if (!stream->Write(g)) break;
      v1::GroupAck ack;
      if (!stream->Read(&ack)) break;
      acks.push_back(ack);
    }
    stream->WritesDone();
    grpc::Status st = stream->Finish();
    if (status) *status = st;
    return acks;
  }

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Ingestor> ingestor_;
  std::unique_ptr<WeightPublisher> publisher_;
  std::unique_ptr<LearnerServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LearnerService::Stub> stub_;
};

TEST_F(LearnerServiceTest, UnregisteredActorsAreRefused) {
  Start();
  grpc::ClientContext ctx;
  v1::HeartbeatRequest hb;
  hb.set_actor_id("ghost");
  v1::HeartbeatResponse resp;
  grpc::Status st = stub_->Heartbeat(&ctx, hb, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("call RegisterActor first"));
  grpc::Status push;
  EXPECT_TRUE(Push({Group("g1")}, &push).empty());
  EXPECT_EQ(push.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  grpc::ClientContext ctx2;
  v1::RegisterActorRequest bad;
  v1::RegisterActorResponse r;
  EXPECT_EQ(stub_->RegisterActor(&ctx2, bad, &r).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// The end of a run reaches actors that were reconnecting when it came: one that
// called unregistered (or that a resumed checkpoint knows) holds the end back until
// it registers, and its registration reply says the run has ended.
TEST_F(LearnerServiceTest, TheEndOfTheRunReachesActorsThatRegisterLate) {
  Start();
  Register("told");
  service_->ExpectActors({"expected", "told"});
  v1::HeartbeatResponse resp;
  EXPECT_EQ(Heartbeat("late", &resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  service_->RequestShutdown();
  // "told" is registered but has not heard it yet; "late" and "expected" are not
  // registered.
  EXPECT_EQ(service_->WaitUntilActorsTold(absl::Now()), 3);
  ASSERT_TRUE(Heartbeat("told", &resp).ok());
  EXPECT_TRUE(resp.shutdown_requested());
  for (const std::string id : {"late", "expected"}) {
    EXPECT_TRUE(Register(id).shutdown_requested()) << id;
  }
  EXPECT_EQ(service_->WaitUntilActorsTold(absl::Now()), 0);
}

TEST_F(LearnerServiceTest, RegistrationBeforeTheEndDoesNotEndTheRun) {
  Start();
  EXPECT_FALSE(Register("actor-0").shutdown_requested());
  EXPECT_EQ(service_->WaitUntilActorsTold(absl::Now()), 1);
}

TEST_F(LearnerServiceTest, GroupsAreAcceptedOnceAndBadOnesExplained) {
  Start();
  Register();
  v1::TrajectoryGroup bad_span = Group("g-bad");
  bad_span.mutable_trajectories(1)->mutable_steps(0)->mutable_action()->set_end(11);
  v1::TrajectoryGroup bad_token = Group("g-vocab");
  bad_token.mutable_trajectories(0)->set_token_ids(3, 100);
  auto acks = Push({Group("g1"), Group("g2"), Group("g1"), bad_span, bad_token});
  ASSERT_EQ(acks.size(), 5u);
  EXPECT_EQ(acks[0].result(), v1::GroupAck::RESULT_ACCEPTED);
  EXPECT_EQ(acks[1].result(), v1::GroupAck::RESULT_ACCEPTED);
  EXPECT_EQ(acks[2].result(), v1::GroupAck::RESULT_DUPLICATE);
  EXPECT_EQ(acks[3].result(), v1::GroupAck::RESULT_INVALID);
  EXPECT_THAT(acks[3].message(),
              HasSubstr("g-bad from actor-0, trajectory 1 (g-bad-1), step 0"));
  EXPECT_THAT(acks[3].message(), HasSubstr("action span [6, 11)"));
  EXPECT_THAT(acks[4].message(), HasSubstr("outside the vocabulary of 100"));
  // A re-send on a new stream (after a reconnect) is still counted once.
  auto again = Push({Group("g2")});
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].result(), v1::GroupAck::RESULT_DUPLICATE);
  auto taken = ingestor_->Take(1, 10, absl::Now());
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].group_id(), "g1");
  EXPECT_EQ(taken[1].group_id(), "g2");

  grpc::ClientContext ctx;
  v1::StatusResponse status;
  ASSERT_TRUE(stub_->Status(&ctx, v1::StatusRequest(), &status).ok());
  EXPECT_EQ(status.groups_accepted(), 2u);
  EXPECT_EQ(status.groups_duplicate(), 2u);
  EXPECT_EQ(status.groups_invalid(), 2u);
  EXPECT_EQ(status.actors_alive(), 1u);
}

TEST_F(LearnerServiceTest, ConcurrentStreamsJournalEveryGroupBeforeItsAck) {
  testutil::TempDir tmp("nbrl-svc-");
  GroupJournal* journal = StartWithSyncedJournal(tmp.path() + "/journal.log");
  ASSERT_NE(journal, nullptr);

  // Four actors' streams at once while the trainer takes what is accepted.
  constexpr int kStreams = 4, kEach = 20;
  std::atomic<bool> stop{false};
  std::atomic<size_t> taken{0};
  std::thread trainer([&] {
    while (!stop)
      taken += ingestor_->Take(1, 16, absl::Now() + absl::Milliseconds(20)).size();
  });
  std::vector<std::vector<v1::GroupAck>> acks(kStreams);
  std::vector<std::thread> actors;
  for (int k = 0; k < kStreams; ++k) {
    actors.emplace_back([&, k] {
      std::vector<v1::TrajectoryGroup> groups;
      for (int i = 0; i < kEach; ++i)
        groups.push_back(Group(absl::StrCat("s", k, "-g", i)));
      acks[k] = Push(groups);
    });
  }
  for (auto& t : actors) t.join();
  for (const auto& stream : acks) {
    ASSERT_EQ(stream.size(), static_cast<size_t>(kEach));
    for (const auto& ack : stream)
      EXPECT_EQ(ack.result(), v1::GroupAck::RESULT_ACCEPTED);
  }
  stop = true;
  trainer.join();
  taken += ingestor_->Take(0, 1000, absl::Now()).size();
  EXPECT_EQ(taken.load(), static_cast<size_t>(kStreams * kEach));

  // Every acknowledged group is in the journal, whole; the syncs were shared or
  // one per group, never fewer than one.
  auto all = GroupJournal::Read(tmp.path() + "/journal.log");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_FALSE(all->torn_tail);
  std::set<std::string> ids;
  for (const auto& g : all->groups) ids.insert(g.group_id());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kStreams * kEach));
  EXPECT_GE(journal->syncs(), 1u);
  EXPECT_LE(journal->syncs(), static_cast<uint64_t>(kStreams * kEach));
}

// One actor's stream with many groups unacknowledged (its window): the handler
// reads on while earlier records sync, and still sends every ack in order and only
// once its record is on disk.
TEST_F(LearnerServiceTest, AWindowedStreamIsAckedInOrderEachAfterItsSync) {
  testutil::TempDir tmp("nbrl-svc-");
  GroupJournal* journal = StartWithSyncedJournal(tmp.path() + "/journal.log");
  ASSERT_NE(journal, nullptr);

  constexpr int kGroups = 60;
  grpc::ClientContext ctx;
  auto stream = stub_->PushTrajectories(&ctx);
  std::thread writer([&] {
    for (int i = 0; i < kGroups; ++i) {
      if (!stream->Write(Group(absl::StrCat("w", i)))) break;
    }
    stream->WritesDone();
  });
  v1::GroupAck ack;
  int n = 0;
  while (stream->Read(&ack)) {
    ASSERT_LT(n, kGroups);
    EXPECT_EQ(ack.group_id(), absl::StrCat("w", n));
    EXPECT_EQ(ack.result(), v1::GroupAck::RESULT_ACCEPTED) << ack.message();
    // One stream's records are numbered in its order: record n + 1 is synced.
    EXPECT_FALSE(journal->NeedsSync(static_cast<uint64_t>(n + 1))) << "ack " << n;
    ++n;
  }
  writer.join();
  grpc::Status st = stream->Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(n, kGroups);
  EXPECT_GE(journal->syncs(), 1u);
  EXPECT_LE(journal->syncs(), static_cast<uint64_t>(kGroups));
  auto all = GroupJournal::Read(tmp.path() + "/journal.log");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->groups.size(), static_cast<size_t>(kGroups));
}

// A journal whose sync fails (/dev/null refuses fdatasync): no group of the stream
// is acknowledged as accepted, the stream ends in an error, the ingestor stops.
TEST_F(LearnerServiceTest, AStreamWhoseSyncFailsAcknowledgesNothing) {
  Start();
  Register();
  auto j = GroupJournal::Create("/dev/null", /*sync=*/true);
  ASSERT_TRUE(j.ok()) << j.status();
  ingestor_->SetJournal(std::move(*j));
  grpc::ClientContext ctx;
  auto stream = stub_->PushTrajectories(&ctx);
  std::thread writer([&] {
    for (int i = 0; i < 8; ++i) {
      if (!stream->Write(Group(absl::StrCat("d", i)))) break;
    }
    stream->WritesDone();
  });
  v1::GroupAck ack;
  while (stream->Read(&ack)) {
    ADD_FAILURE() << "acknowledged " << ack.group_id() << ": "
                  << v1::GroupAck::Result_Name(ack.result());
  }
  writer.join();
  grpc::Status st = stream->Finish();
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE(ingestor_->failure().ok());
  EXPECT_THAT(std::string(ingestor_->failure().message()),
              HasSubstr("cannot sync /dev/null"));
}

TEST_F(LearnerServiceTest, StaleAndUniformGroupsAreDroppedAndCounted) {
  IngestorOptions o;
  o.max_staleness = 1;
  o.uniform_group_keep = 0.0;
  Start(o);
  Register();
  publisher_->Publish(std::make_shared<common::WeightVersion>(Version(3, 10)));
  auto acks = Push(
      {Group("old", /*version=*/1), Group("fresh", 2), Group("same", 3, {1.0f, 1.0f})});
  ASSERT_EQ(acks.size(), 3u);
  EXPECT_EQ(acks[0].result(), v1::GroupAck::RESULT_STALE);
  EXPECT_THAT(acks[0].message(), HasSubstr("2 versions behind 3"));
  EXPECT_EQ(acks[1].result(), v1::GroupAck::RESULT_ACCEPTED);
  EXPECT_EQ(acks[2].result(), v1::GroupAck::RESULT_FILTERED);
  EXPECT_EQ(acks[1].current_policy_version(), 3u);
  // The stale group re-sent keeps its verdict.
  EXPECT_EQ(Push({Group("old", 1)})[0].result(), v1::GroupAck::RESULT_STALE);
}

// A group fresh on arrival that waits in the queue while the policy moves on is
// dropped when taken, and the take waits for a fresh one instead.
TEST_F(LearnerServiceTest, GroupsThatGoStaleInTheQueueExpire) {
  IngestorOptions o;
  o.max_staleness = 1;
  Start(o);
  Register();
  publisher_->Publish(std::make_shared<common::WeightVersion>(Version(3, 10)));
  auto acks = Push({Group("v2", 2), Group("v3", 3)});
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks[0].result(), v1::GroupAck::RESULT_ACCEPTED);
  EXPECT_EQ(acks[1].result(), v1::GroupAck::RESULT_ACCEPTED);
  // Trained at version 4: "v2" is now 2 behind and expires, "v3" is 1 behind.
  auto taken = ingestor_->Take(1, 2, absl::Now() + absl::Seconds(5), 4);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].group_id(), "v3");
  EXPECT_EQ(ingestor_->stats().expired, 1u);
  EXPECT_EQ(ingestor_->stats().accepted, 2u);
  // Short of `min` after the expiry, Take waits for a fresh group to arrive.
  ASSERT_EQ(Push({Group("v3b", 3)})[0].result(), v1::GroupAck::RESULT_ACCEPTED);
  publisher_->Publish(std::make_shared<common::WeightVersion>(Version(5, 10)));
  std::vector<v1::GroupAck> late_acks;
  std::thread late([&] {
    absl::SleepFor(absl::Milliseconds(300));
    late_acks = Push({Group("v5", 5)});
  });
  taken = ingestor_->Take(1, 1, absl::Now() + absl::Seconds(30), 5);
  late.join();
  ASSERT_EQ(late_acks.size(), 1u);
  EXPECT_EQ(late_acks[0].result(), v1::GroupAck::RESULT_ACCEPTED);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].group_id(), "v5");
  EXPECT_EQ(ingestor_->stats().expired, 2u);
  // A re-sent expired group is stale, not queued again.
  EXPECT_EQ(Push({Group("v2", 2)})[0].result(), v1::GroupAck::RESULT_STALE);
}

TEST_F(LearnerServiceTest, FullQueueHoldsTheActorBackWithoutDropping) {
  IngestorOptions o;
  o.capacity = 2;
  Start(o);
  Register();
  std::vector<v1::GroupAck> acks;
  std::thread actor([&] {
    acks = Push({Group("a"), Group("b"), Group("c"), Group("d")});
  });
  // Until the trainer takes some, the actor's third group waits for room.
  absl::Time until = absl::Now() + absl::Seconds(30);
  while (ingestor_->stats().accepted < 2 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(ingestor_->stats().accepted, 2u);
  EXPECT_EQ(ingestor_->stats().queued, 2u);
  // The trainer takes groups one by one; the rest follow, none is lost.
  std::vector<std::string> taken;
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (taken.size() < 4 && absl::Now() < deadline) {
    for (auto& g : ingestor_->Take(1, 1, absl::Now() + absl::Seconds(1))) {
      taken.push_back(g.group_id());
    }
    EXPECT_LE(ingestor_->stats().queued, 2u);
  }
  actor.join();
  EXPECT_EQ(taken, (std::vector<std::string>{"a", "b", "c", "d"}));
  ASSERT_EQ(acks.size(), 4u);
  for (const auto& ack : acks) EXPECT_EQ(ack.result(), v1::GroupAck::RESULT_ACCEPTED);
}

// Reads weight chunks and reassembles versions until `count` versions arrived.
std::vector<std::shared_ptr<common::WeightVersion>> ReadVersions(
    v1::LearnerService::Stub* stub, uint64_t have, size_t count,
    const std::function<void(uint64_t)>& on_version = nullptr) {
  grpc::ClientContext ctx;
  v1::SubscribeWeightsRequest req;
  req.set_actor_id("actor-0");
  req.set_have_version(have);
  auto reader = stub->SubscribeWeights(&ctx, req);
  common::WeightAssembler assembler;
  std::vector<std::shared_ptr<common::WeightVersion>> out;
  v1::WeightChunk chunk;
  while (out.size() < count && reader->Read(&chunk)) {
    auto v = assembler.Add(chunk);
    EXPECT_TRUE(v.ok()) << v.status();
    if (v.ok() && *v) {
      out.push_back(*v);
      if (on_version) on_version((*v)->manifest.version());
    }
  }
  ctx.TryCancel();
  return out;
}

TEST_F(LearnerServiceTest, LateSubscriberGetsTheCurrentVersionFirst) {
  Start();
  Register();
  publisher_->Publish(std::make_shared<common::WeightVersion>(Version(1, 2500)));
  publisher_->Publish(std::make_shared<common::WeightVersion>(Version(2, 3000)));
  std::thread later([&] {
    absl::SleepFor(absl::Milliseconds(300));
    publisher_->Publish(std::make_shared<common::WeightVersion>(Version(3, 100)));
  });
  auto versions = ReadVersions(stub_.get(), 0, 2);
  later.join();
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0]->manifest.version(), 2u)
      << "the current version, not version 1";
  EXPECT_EQ(versions[0]->bytes, std::string(3000, '\x02'));
  EXPECT_EQ(versions[1]->manifest.version(), 3u);
}

TEST_F(LearnerServiceTest, SubscriberThatHasTheCurrentVersionWaitsForTheNext) {
  Start();
  Register();
  publisher_->Publish(std::make_shared<common::WeightVersion>(Version(5, 10)));
  std::thread later([&] {
    absl::SleepFor(absl::Milliseconds(200));
    publisher_->Publish(std::make_shared<common::WeightVersion>(Version(6, 10)));
  });
  auto versions = ReadVersions(stub_.get(), /*have=*/5, 1);
  later.join();
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_EQ(versions[0]->manifest.version(), 6u);
}

// While a subscriber is still receiving version 1, versions 2, 3 and 4 appear: it
// gets 4 next. Version 1 is 32 MiB so that gRPC's flow control keeps most of it
// at the server until the reader goes on.
TEST_F(LearnerServiceTest, SubscriberBusyWithAVersionSkipsToTheNewest) {
  Start();
  Register();
  publisher_->Publish(std::make_shared<common::WeightVersion>(Version(1, 32 << 20)));
  std::vector<uint64_t> started;
  grpc::ClientContext ctx;
  v1::SubscribeWeightsRequest req;
  req.set_actor_id("actor-0");
  auto reader = stub_->SubscribeWeights(&ctx, req);
  common::WeightAssembler assembler;
  v1::WeightChunk chunk;
  int complete = 0;
  while (complete < 2 && reader->Read(&chunk)) {
    if (chunk.has_manifest()) {
      started.push_back(chunk.version());
      if (chunk.version() == 1) {
        for (uint64_t n = 2; n <= 4; ++n) {
          publisher_->Publish(
              std::make_shared<common::WeightVersion>(Version(n, 5000)));
        }
      }
    }
    auto v = assembler.Add(chunk);
    ASSERT_TRUE(v.ok()) << v.status();
    if (*v) ++complete;
  }
  ctx.TryCancel();
  EXPECT_EQ(started, (std::vector<uint64_t>{1, 4}));
}

// Each chunk's data on the wire is the published version's bytes; a version of 0
// bytes is one chunk without data. Chunk boundaries follow chunk_bytes (1000).
TEST_F(LearnerServiceTest, ChunksCarryTheVersionBytesAndChecksums) {
  Start();
  Register();
  common::WeightVersion v = Version(7, 2500);
  for (size_t i = 0; i < v.bytes.size(); ++i) v.bytes[i] = static_cast<char>(i * 31);
  v.manifest.set_crc32c(common::Crc32c(v.bytes.data(), v.bytes.size()));
  publisher_->Publish(std::make_shared<common::WeightVersion>(v));
  grpc::ClientContext ctx;
  v1::SubscribeWeightsRequest req;
  req.set_actor_id("actor-0");
  auto reader = stub_->SubscribeWeights(&ctx, req);
  std::vector<v1::WeightChunk> chunks(3);
  for (auto& c : chunks) ASSERT_TRUE(reader->Read(&c));
  ctx.TryCancel();
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].version(), 7u);
    EXPECT_EQ(chunks[i].offset(), i * 1000);
    EXPECT_EQ(chunks[i].data(), v.bytes.substr(i * 1000, 1000));
    EXPECT_EQ(chunks[i].crc32c(),
              common::Crc32c(chunks[i].data().data(), chunks[i].data().size()));
    EXPECT_EQ(chunks[i].has_manifest(), i == 0);
    EXPECT_EQ(chunks[i].last(), i == 2);
  }

  publisher_->Publish(std::make_shared<common::WeightVersion>(Version(8, 0)));
  grpc::ClientContext ctx2;
  req.set_have_version(7);
  auto reader2 = stub_->SubscribeWeights(&ctx2, req);
  v1::WeightChunk empty;
  ASSERT_TRUE(reader2->Read(&empty));
  ctx2.TryCancel();
  EXPECT_EQ(empty.version(), 8u);
  EXPECT_TRUE(empty.last());
  EXPECT_TRUE(empty.data().empty());
}

// Chunk CRCs that come with a version for the publisher's chunk size are sent as
// they are (the subscriber checks them against the bytes); for another size they
// are computed from the bytes.
TEST_F(LearnerServiceTest, ChunkChecksumsFromTheEncoderAreUsedForTheirChunkSize) {
  Start();
  Register();
  auto first_crcs = [&](const common::WeightVersion& v, size_t have) {
    publisher_->Publish(std::make_shared<common::WeightVersion>(v));
    grpc::ClientContext ctx;
    v1::SubscribeWeightsRequest req;
    req.set_actor_id("actor-0");
    req.set_have_version(have);
    auto reader = stub_->SubscribeWeights(&ctx, req);
    std::vector<uint32_t> crcs;
    v1::WeightChunk c;
    for (int i = 0; i < 3 && reader->Read(&c); ++i) crcs.push_back(c.crc32c());
    ctx.TryCancel();
    return crcs;
  };
  common::WeightVersion v = Version(3, 2500);
  v.chunk_crc_bytes = 1000;  // the publisher's
  v.chunk_crcs = {11, 22, 33};
  EXPECT_EQ(first_crcs(v, 0), (std::vector<uint32_t>{11, 22, 33}));
  v.manifest.set_version(4);
  v.chunk_crc_bytes = 500;
  v.chunk_crcs = {1, 2, 3, 4, 5};
  EXPECT_EQ(first_crcs(v, 3), common::ChunkCrcs(v, 1000));
}

// The actors' raw reader (common::ReadWeightStream) assembles the same versions,
// and a refused subscription comes back as the call's status.
TEST_F(LearnerServiceTest, RawReaderAssemblesTheVersions) {
  Start();
  Register();
  common::WeightVersion v = Version(9, 4321);
  for (size_t i = 0; i < v.bytes.size(); ++i) v.bytes[i] = static_cast<char>(i * 7);
  v.manifest.set_crc32c(common::Crc32c(v.bytes.data(), v.bytes.size()));
  publisher_->Publish(std::make_shared<common::WeightVersion>(v));
  grpc::ClientContext ctx;
  v1::SubscribeWeightsRequest req;
  req.set_actor_id("actor-0");
  common::WeightAssembler assembler;
  std::vector<std::shared_ptr<common::WeightVersion>> got;
  grpc::Status st = common::ReadWeightStream(
      channel_, &ctx, req, &assembler, [&](std::shared_ptr<common::WeightVersion> w) {
        got.push_back(std::move(w));
        ctx.TryCancel();
      });
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->manifest.version(), 9u);
  EXPECT_EQ(got[0]->bytes, v.bytes);

  grpc::ClientContext ctx2;
  req.set_actor_id("stranger");
  common::WeightAssembler assembler2;
  st = common::ReadWeightStream(channel_, &ctx2, req, &assembler2,
                                [](std::shared_ptr<common::WeightVersion>) {});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// A subscriber waiting for a version leaves when it cancels; Close ends the
// streams that are waiting, with OK; an unregistered actor is refused.
TEST_F(LearnerServiceTest, WeightStreamsEndOnCancelCloseAndRefusal) {
  Start();
  Register();
  publisher_->Publish(std::make_shared<common::WeightVersion>(Version(1, 10)));
  v1::SubscribeWeightsRequest req;
  req.set_actor_id("actor-0");
  req.set_have_version(1);
  {
    grpc::ClientContext ctx;
    auto reader = stub_->SubscribeWeights(&ctx, req);
    std::thread cancel([&] {
      absl::SleepFor(absl::Milliseconds(100));
      ctx.TryCancel();
    });
    v1::WeightChunk chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    cancel.join();
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  {
    grpc::ClientContext ctx;
    auto reader = stub_->SubscribeWeights(&ctx, req);
    std::thread close([&] {
      absl::SleepFor(absl::Milliseconds(100));
      publisher_->Close();
    });
    v1::WeightChunk chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    close.join();
    EXPECT_TRUE(reader->Finish().ok());
  }
  {
    grpc::ClientContext ctx;
    req.set_actor_id("stranger");
    auto reader = stub_->SubscribeWeights(&ctx, req);
    v1::WeightChunk chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
}

}  // namespace
}  // namespace nbrl::learner
