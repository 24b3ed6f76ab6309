// The actor's LearnerClient against a real LearnerService on loopback: at-least-once
// delivery with exactly-once counting across a learner restart, back-pressure, and
// the weight subscription.
#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <set>

#include "absl/time/clock.h"
#include "actor/learner_client.h"
#include "common/crc32c.h"
#include "gtest/gtest.h"
#include "learner/learner_service.h"

namespace nbrl {
namespace {

v1::TrajectoryGroup Group(const std::string& id) {
  v1::TrajectoryGroup g;
  g.set_group_id(id);
  g.set_actor_id("node0/actor0");
  for (int r = 0; r < 2; ++r) {
    v1::Trajectory* t = g.add_trajectories();
    t->set_trajectory_id(id + "-" + std::to_string(r));
    for (int i = 0; i < 8; ++i) {
      t->add_token_ids(i);
      t->add_behavior_logprobs(i >= 4 ? -1.0f : 0.0f);
    }
    v1::Step* s = t->add_steps();
    s->add_context()->set_end(4);
    s->mutable_action()->set_begin(4);
    s->mutable_action()->set_end(8);
    s->mutable_observation()->set_begin(8);
    s->mutable_observation()->set_end(8);
    t->set_ending_reason(v1::ENDING_REASON_MAX_STEPS);
    t->set_total_reward(static_cast<float>(r));
  }
  return g;
}

// One learner rank: ingestor, publisher, service and server.
struct Learner {
  explicit Learner(int port = 0, std::map<std::string, int> decisions = {}) {
    learner::IngestorOptions io;
    io.capacity = 1000;
    ingestor = std::make_unique<learner::Ingestor>(io, nullptr);
    ingestor->RestoreDecisions(decisions);
    publisher = std::make_unique<learner::WeightPublisher>(
        learner::WeightPublisherOptions{/*chunk_bytes=*/4096}, nullptr);
    service = std::make_unique<learner::LearnerServiceImpl>(
        learner::LearnerServiceOptions{}, ingestor.get(), publisher.get());
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:" + std::to_string(port),
                       grpc::InsecureServerCredentials(), &bound_port);
    b.RegisterService(service.get());
    server = b.BuildAndStart();
  }
  ~Learner() { Stop(); }
  void Stop() {
    if (!server) return;
    ingestor->Close();
    publisher->Close();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server->Wait();
    server.reset();
  }
  std::set<std::string> Taken() {
    std::set<std::string> ids;
    for (auto& g : ingestor->Take(0, 100000, absl::Now())) ids.insert(g.group_id());
    return ids;
  }
  int bound_port = 0;
  std::unique_ptr<learner::Ingestor> ingestor;
  std::unique_ptr<learner::WeightPublisher> publisher;
  std::unique_ptr<learner::LearnerServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
};

actor::LearnerClientOptions ClientOptions(int port) {
  actor::LearnerClientOptions o;
  o.address = "127.0.0.1:" + std::to_string(port);
  o.actor_id = "node0/actor0";
  o.max_unacked = 4;
  o.backoff_initial = absl::Milliseconds(20);
  o.backoff_max = absl::Milliseconds(200);
  return o;
}

TEST(ActorLearnerTest, GroupsArriveInOrderAndAreAcknowledged) {
  Learner learner;
  ASSERT_NE(learner.server, nullptr);
  auto client =
      actor::LearnerClient::Create(ClientOptions(learner.bound_port), nullptr);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Start(0, absl::Now() + absl::Seconds(10)).ok());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(
        (*client)
            ->Send(Group("g" + std::to_string(i)), absl::Now() + absl::Seconds(10))
            .ok());
  }
  ASSERT_TRUE((*client)->Flush(absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ(learner.Taken().size(), 20u);
  auto stats = (*client)->stats();
  EXPECT_EQ(stats.acknowledged, 20u);
  EXPECT_EQ(stats.results["accepted"], 20u);
  EXPECT_EQ(stats.reconnects, 0u);
}

TEST(ActorLearnerTest, ARestartedLearnerGetsEveryGroupAndCountsEachOnce) {
  auto first = std::make_unique<Learner>();
  const int port = first->bound_port;
  auto client = actor::LearnerClient::Create(ClientOptions(port), nullptr);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Start(0, absl::Now() + absl::Seconds(10)).ok());
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        (*client)
            ->Send(Group("a" + std::to_string(i)), absl::Now() + absl::Seconds(10))
            .ok());
  }
  ASSERT_TRUE((*client)->Flush(absl::Now() + absl::Seconds(10)).ok());
  std::set<std::string> before = first->Taken();
  // The learner dies; its checkpoint holds its decisions.
  std::map<std::string, int> decisions = first->ingestor->Decisions();
  first->Stop();
  first.reset();
  // The actor keeps producing while the learner is down (up to max_unacked).
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        (*client)
            ->Send(Group("b" + std::to_string(i)), absl::Now() + absl::Seconds(10))
            .ok());
  }
  Learner second(port, decisions);
  ASSERT_NE(second.server, nullptr) << "port " << port << " could not be bound again";
  // A group the first learner already accepted is re-sent by a confused actor.
  ASSERT_TRUE((*client)->Send(Group("a0"), absl::Now() + absl::Seconds(10)).ok());
  ASSERT_TRUE((*client)->Flush(absl::Now() + absl::Seconds(20)).ok());
  std::set<std::string> after = second.Taken();
  EXPECT_EQ(before.size(), 6u);
  EXPECT_EQ(after, (std::set<std::string>{"b0", "b1", "b2", "b3"}));
  auto stats = (*client)->stats();
  EXPECT_GE(stats.reconnects, 1u);
  EXPECT_EQ(stats.results["duplicate"], 1u);
  EXPECT_EQ(stats.results["accepted"], 10u);
}

TEST(ActorLearnerTest, SendBlocksWhileTooManyGroupsAreUnacknowledged) {
  auto learner = std::make_unique<Learner>();
  const int port = learner->bound_port;
  auto client = actor::LearnerClient::Create(ClientOptions(port), nullptr);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Start(0, absl::Now() + absl::Seconds(10)).ok());
  learner->Stop();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        (*client)
            ->Send(Group("c" + std::to_string(i)), absl::Now() + absl::Seconds(5))
            .ok());
  }
  absl::Status fifth =
      (*client)->Send(Group("c4"), absl::Now() + absl::Milliseconds(300));
  EXPECT_TRUE(absl::IsDeadlineExceeded(fifth)) << fifth;
  (*client)->Close();
}

TEST(ActorLearnerTest, WeightsFollowTheLearner) {
  Learner learner;
  auto client =
      actor::LearnerClient::Create(ClientOptions(learner.bound_port), nullptr);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Start(0, absl::Now() + absl::Seconds(10)).ok());
  auto make = [](uint64_t v) {
    auto w = std::make_shared<common::WeightVersion>();
    w->bytes.assign(10000, static_cast<char>(v));
    w->manifest.set_version(v);
    w->manifest.set_total_bytes(10000);
    w->manifest.set_crc32c(common::Crc32c(w->bytes.data(), w->bytes.size()));
    return w;
  };
  learner.publisher->Publish(make(1));
  absl::Mutex mu;
  std::vector<uint64_t> got;
  (*client)->FollowWeights(0, [&](std::shared_ptr<common::WeightVersion> v) {
    EXPECT_EQ(v->bytes, std::string(10000, static_cast<char>(v->manifest.version())));
    absl::MutexLock lock(&mu);
    got.push_back(v->manifest.version());
  });
  auto wait_for = [&](size_t n) {
    absl::MutexLock lock(&mu);
    auto enough = [&] { return got.size() >= n; };
    return mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  };
  ASSERT_TRUE(wait_for(1));
  learner.publisher->Publish(make(2));
  ASSERT_TRUE(wait_for(2));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(got, (std::vector<uint64_t>{1, 2}));
}

}  // namespace
}  // namespace nbrl
