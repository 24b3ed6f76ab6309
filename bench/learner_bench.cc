// nbrl-learner-bench: the learner's two gRPC paths side by side with a baseline
// each, in one run (bench/harness.h: alternating rounds, medians, ratio).
//
//   ingestion: realistic TrajectoryGroups pushed on PushTrajectories to an
//     in-process LearnerServiceImpl (a real Ingestor: validation, de-duplication,
//     bounded queue, metrics; a consumer thread drains it as the trainer does) vs
//     bench/learner_peer.py, a Python grpcio server that checks each group
//     minimally and acks it. The same C++ client drives both: one bidi stream, at
//     most --window groups unacknowledged (the actor's max_unacked). Groups/s.
//   weights: for each size in --weight-mib (64, 512, 2048 MiB of f32 in
//     Qwen2.5-0.5B tensor shapes) and each count in --subscribers (1, 4, 16), one
//     weight version published through WeightPublisher and streamed on
//     SubscribeWeights to that many subscribers at once, each reassembling it with
//     WeightAssembler (per-chunk and whole-version CRC-32C), until the last has it,
//     vs the same bytes sent to as many receivers over raw loopback TCP sockets (a
//     limit, not a peer). GB/s delivered (10^9 bytes/s, summed over subscribers).
//     A cell that does not fit in memory is skipped, saying so.
//
//   build/bench/nbrl-learner-bench [--quick] [--rounds N] [--groups N] [--out DIR]
//
// Progress goes to stderr, results to stdout and, as JSON, to
// DIR/learner_ingest.json and DIR/learner_weights_<MiB>MiB_x<N>.json. Without python3's
// grpcio and grpc_tools the ingestion comparison prints "SKIPPED ..." and is left out.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/registry.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/harness.h"
#include "common/crc32c.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/weight_reader.h"
#include "common/weight_stream.h"
#include "google/protobuf/unknown_field_set.h"
#include "learner/group_journal.h"
#include "learner/ingestor.h"
#include "learner/learner_service.h"
#include "learner/weight_publisher.h"
#include "nbrl/v1/learner.grpc.pb.h"

extern char** environ;

namespace nbrl::bench {
namespace {

using v1::LearnerService;

constexpr int64_t kQwenVocab = 151936;
// Every blocking step of a round ends by then at the latest.
constexpr absl::Duration kRoundDeadline = absl::Minutes(5);
constexpr absl::Duration kPeerStartTimeout = absl::Seconds(60);
constexpr int kMaxMessageBytes = 256 << 20;

struct BenchOptions {
  int rounds = 7;
  int warmup = 1;
  // Ingestion: groups per round, their shape, and the client's window.
  int groups = 2000;
  int group_size = 4;
  int tokens = 2000;  // per trajectory
  int steps = 8;      // per trajectory
  int window = 16;
  int streams = 1;  // concurrent PushTrajectories streams (actors), groups split
  // Weights: sizes of one version (MiB), subscriber counts, the chunk size.
  std::vector<int> weight_mib = {64, 512, 2048};
  std::vector<int> subscribers = {1, 4, 16};
  int chunk_kb = 1024;
  bool ingest = true;
  bool weights = true;
  // The learner's write-ahead journal of accepted groups: "off" (the bench's
  // default, like the Python peer), "write" (learner.journal_sync=false) or "sync"
  // (nbrl-learner's default: fdatasync per group). It goes to OUT/journal.
  std::string journal = "off";
  std::string out = "bench-results";
  std::string python = "/usr/bin/python3";
};

// ---------------------------------------------------------------------------
// Trajectory groups

// One trajectory as an actor sends it: a prompt, then `steps` actions each followed
// by an observation; later steps see a trimmed context (two spans). Log-probs are
// set inside actions only; token ids are random within Qwen's vocabulary.
v1::Trajectory MakeTrajectory(const BenchOptions& o, int index, std::mt19937_64& rng) {
  std::uniform_int_distribution<uint32_t> token(0, kQwenVocab - 1);
  std::uniform_real_distribution<float> logprob(-4.0f, -0.001f);
  v1::Trajectory t;
  t.set_trajectory_id(absl::StrCat("traj-", index));
  const int prompt = o.tokens / 5;
  const int per_step = (o.tokens - prompt) / o.steps;
  std::vector<bool> in_action(o.tokens, false);
  for (int k = 0; k < o.steps; ++k) {
    const int begin = prompt + k * per_step;
    const int end = k + 1 == o.steps ? o.tokens : begin + per_step;
    const int action_end =
        k + 1 == o.steps ? end : begin + std::max(1, per_step * 7 / 10);
    v1::Step* s = t.add_steps();
    if (k < 4) {
      s->add_context()->set_end(begin);
    } else {
      s->add_context()->set_end(prompt);
      v1::TokenSpan* recent = s->add_context();
      recent->set_begin(prompt + (k - 3) * per_step);
      recent->set_end(begin);
    }
    s->mutable_action()->set_begin(begin);
    s->mutable_action()->set_end(action_end);
    s->mutable_observation()->set_begin(action_end);
    s->mutable_observation()->set_end(end);
    for (int i = begin; i < action_end; ++i) in_action[i] = true;
    s->set_policy_version(0);
    for (auto [name, value] :
         {std::pair{"format", 0.1f}, {"execution", k % 3 == 0 ? 0.0f : 0.05f}}) {
      v1::RewardComponent* c = s->add_rewards();
      c->set_name(name);
      c->set_value(value);
    }
    s->set_well_formed(true);
    s->set_executed_ok(k % 3 != 0);
    s->mutable_generate_time()->set_nanos(350'000'000);
    s->mutable_execute_time()->set_nanos(40'000'000);
    s->set_reward(0.1f);
  }
  for (int i = 0; i < o.tokens; ++i) {
    t.add_token_ids(token(rng));
    t.add_behavior_logprobs(in_action[i] ? logprob(rng) : 0.0f);
  }
  t.set_has_final_answer(true);
  t.set_final_answer(index % 2 ? "42" : "41");
  t.set_ending_reason(v1::ENDING_REASON_SUBMITTED);
  for (auto [name, value] :
       {std::pair{"em", index % 2 ? 1.0f : 0.0f}, {"f1", index % 2 ? 1.0f : 0.5f}}) {
    v1::RewardComponent* c = t.add_final_rewards();
    c->set_name(name);
    c->set_value(value);
  }
  t.set_total_reward(index % 2 ? 1.9f : 0.4f);
  t.mutable_wall_time()->set_seconds(12);
  return t;
}

v1::TrajectoryGroup MakeGroup(const BenchOptions& o, const std::string& actor_id) {
  std::mt19937_64 rng(7);
  v1::TrajectoryGroup g;
  g.set_actor_id(actor_id);
  g.set_dataset("bench");
  g.set_example_id("example-0");
  g.set_task_family("qa_search");
  for (int i = 0; i < o.group_size; ++i)
    *g.add_trajectories() = MakeTrajectory(o, i, rng);
  return g;
}

// `group` as the bench client sends it: the trajectories encoded once, kept as
// unknown fields 6 (what `repeated Trajectory trajectories = 6` is on the wire), so
// that each push re-encodes only the group's own few fields. The bytes on the wire
// are those of `group`; the receivers parse them as usual. Without this, encoding
// 2,000 groups of 58 kB cost the client (on the same 2 cores) more than our
// server's parsing and validation.
v1::TrajectoryGroup PreEncoded(const v1::TrajectoryGroup& group) {
  v1::TrajectoryGroup wire = group;
  wire.clear_trajectories();
  google::protobuf::UnknownFieldSet* unknown =
      wire.GetReflection()->MutableUnknownFields(&wire);
  for (const v1::Trajectory& t : group.trajectories()) {
    unknown->AddLengthDelimited(v1::TrajectoryGroup::kTrajectoriesFieldNumber,
                                t.SerializeAsString());
  }
  return wire;
}

// ---------------------------------------------------------------------------
// The client, the same for both sides

// With `own_connection`, the channel opens its own TCP connection, as a separate
// actor process does; otherwise gRPC shares one connection between channels to
// the same address and arguments in this process (its global subchannel pool), so
// N subscribers here would be N streams on one HTTP/2 connection.
std::shared_ptr<grpc::Channel> Connect(int port, bool own_connection = false) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

absl::Status RegisterActor(LearnerService::Stub& stub, const std::string& actor_id,
                           int group_size) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::RegisterActorRequest req;
  req.set_actor_id(actor_id);
  req.set_hostname("localhost");
  req.set_group_size(static_cast<uint32_t>(group_size));
  v1::RegisterActorResponse resp;
  grpc::Status st = stub.RegisterActor(&ctx, req, &resp);
  if (!st.ok()) {
    return absl::UnavailableError(
        absl::StrCat("RegisterActor failed: ", st.error_message()));
  }
  return absl::OkStatus();
}

// Pushes `n` copies of `group` with fresh ids "<tag>-<i>" on one PushTrajectories
// stream, at most `window` unacknowledged, and waits for every ack. Returns
// groups/s from the first write to the last ack; an error when the stream fails or
// a group is not accepted.
absl::StatusOr<double> PushGroups(LearnerService::Stub& stub, v1::TrajectoryGroup group,
                                  int n, int window, const std::string& tag) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kRoundDeadline));
  absl::Mutex mu;
  int acked = 0;      // guarded by mu
  bool done = false;  // guarded by mu: the reader stopped
  const absl::Time start = absl::Now();
  auto stream = stub.PushTrajectories(&ctx);
  std::thread writer([&] {
    for (int i = 0; i < n; ++i) {
      {
        absl::MutexLock lock(&mu);
        auto room = [&] { return done || i - acked < window; };
        mu.Await(absl::Condition(&room));
        if (done) break;
      }
      group.set_group_id(absl::StrCat(tag, "-", i));
      if (!stream->Write(group)) break;
    }
    stream->WritesDone();
  });
  int accepted = 0;
  std::string refusal;
  v1::GroupAck ack;
  for (int i = 0; i < n && stream->Read(&ack); ++i) {
    if (ack.result() == v1::GroupAck::RESULT_ACCEPTED) {
      ++accepted;
    } else if (refusal.empty()) {
      refusal = absl::StrCat("group ", ack.group_id(), " got result ", ack.result(),
                             ": ", ack.message());
    }
    absl::MutexLock lock(&mu);
    ++acked;
  }
  const absl::Duration took = absl::Now() - start;
  {
    absl::MutexLock lock(&mu);
    done = true;
  }
  writer.join();
  grpc::Status st = stream->Finish();
  if (!st.ok()) {
    return absl::UnavailableError(absl::StrCat("PushTrajectories failed after ", acked,
                                               " of ", n,
                                               " acks: ", st.error_message()));
  }
  if (accepted != n) {
    return absl::InternalError(
        absl::StrCat(accepted, " of ", n, " groups accepted; ",
                     refusal.empty() ? "acks missing" : refusal));
  }
  return n / absl::ToDoubleSeconds(took);
}

// ---------------------------------------------------------------------------
// Our learner, in process

// A learner rank's gRPC face as nbrl-learner builds it: Ingestor, WeightPublisher
// and LearnerServiceImpl with a Prometheus registry, on a grpc::Server bound to
// 127.0.0.1:0. A consumer thread takes accepted groups as the trainer loop does, so
// the ingestion queue never fills. The destructor closes, shuts down and joins.
class InProcessLearner {
 public:
  static absl::StatusOr<std::unique_ptr<InProcessLearner>> Start(
      const BenchOptions& o) {
    auto l = std::unique_ptr<InProcessLearner>(new InProcessLearner(o));
    grpc::ServerBuilder builder;
    builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &l->port_);
    builder.RegisterService(l->service_.get());
    if (o.journal != "off") {
      l->journal_path_ = o.out + "/journal/rank-0.journal";
      ASSIGN_OR_RETURN(
          std::unique_ptr<learner::GroupJournal> journal,
          learner::GroupJournal::Create(l->journal_path_, o.journal == "sync"));
      l->ingestor_->SetJournal(std::move(journal));
    }
    l->server_ = builder.BuildAndStart();
    if (l->server_ == nullptr || l->port_ == 0) {
      return absl::UnavailableError("cannot serve the learner on 127.0.0.1");
    }
    l->consumer_ = std::thread([p = l.get()] { p->Consume(); });
    return l;
  }
  ~InProcessLearner() {
    stop_ = true;
    ingestor_->Close();
    publisher_->Close();
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    if (consumer_.joinable()) consumer_.join();
    // The journal holds every group of every round (about 0.9 GB at the defaults).
    if (!journal_path_.empty()) {
      std::error_code ec;
      std::filesystem::remove(journal_path_, ec);
    }
  }

  int port() const { return port_; }
  learner::WeightPublisher& publisher() { return *publisher_; }
  learner::IngestorStats stats() const { return ingestor_->stats(); }

 private:
  explicit InProcessLearner(const BenchOptions& o)
      : registry_(std::make_shared<prometheus::Registry>()) {
    learner::IngestorOptions io;
    io.limits.group_size = static_cast<uint32_t>(o.group_size);
    io.limits.vocab_size = kQwenVocab;
    ingestor_ = std::make_unique<learner::Ingestor>(io, registry_.get());
    learner::WeightPublisherOptions wo;
    wo.chunk_bytes = static_cast<size_t>(o.chunk_kb) * 1024;
    publisher_ = std::make_unique<learner::WeightPublisher>(wo, registry_.get());
    learner::LearnerServiceOptions so;
    so.run_id = "bench";
    service_ = std::make_unique<learner::LearnerServiceImpl>(so, ingestor_.get(),
                                                             publisher_.get());
  }
  void Consume() {
    while (!stop_) {
      (void)ingestor_->Take(/*min=*/1, /*max=*/64,
                            absl::Now() + absl::Milliseconds(100));
    }
  }

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<learner::Ingestor> ingestor_;
  std::unique_ptr<learner::WeightPublisher> publisher_;
  std::unique_ptr<learner::LearnerServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string journal_path_;  // empty with --journal off; removed at the end
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread consumer_;
};

// ---------------------------------------------------------------------------
// The Python peer

// Runs argv to completion with its output discarded; its exit code, -1 when it
// could not start or was killed.
int RunQuietly(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// bench/learner_peer.py as a child process: its stdin and stdout are pipes, its
// stderr is ours. It stops when we close its stdin (the destructor; SIGKILL after
// 5 s), or when we die.
class PythonPeer {
 public:
  static absl::StatusOr<std::unique_ptr<PythonPeer>> Start(const std::string& python,
                                                           const std::string& script,
                                                           const std::string& protos) {
    auto p = std::unique_ptr<PythonPeer>(new PythonPeer());
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
      return common::ErrnoToStatus(errno, "pipe");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    std::vector<std::string> argv = {python, script, "--proto-root", protos};
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int rc = posix_spawn(&p->pid_, python.c_str(), &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    p->stdin_ = in[1];
    p->stdout_ = out[0];
    if (rc != 0) {
      p->pid_ = -1;
      return common::ErrnoToStatus(rc, absl::StrCat("starting ", python, " ", script));
    }
    ASSIGN_OR_RETURN(p->port_, p->ReadPort(absl::Now() + kPeerStartTimeout));
    return p;
  }
  ~PythonPeer() {
    if (stdin_ >= 0) ::close(stdin_);
    if (stdout_ >= 0) ::close(stdout_);
    if (pid_ <= 0) return;
    absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        ::kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        return;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  int port() const { return port_; }

 private:
  PythonPeer() = default;
  // Reads stdout until the "PORT=<n>" line.
  absl::StatusOr<int> ReadPort(absl::Time deadline) {
    std::string out;
    while (true) {
      size_t eol = out.find('\n');
      if (eol != std::string::npos) {
        int port = 0;
        if (out.rfind("PORT=", 0) == 0 &&
            absl::SimpleAtoi(out.substr(5, eol - 5), &port) && port > 0) {
          return port;
        }
        return absl::InternalError(absl::StrCat("the Python peer printed '",
                                                out.substr(0, eol),
                                                "', expected PORT=<port>"));
      }
      int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      pollfd pfd{stdout_, POLLIN, 0};
      if (ms <= 0 || ::poll(&pfd, 1, ms) <= 0) {
        return absl::DeadlineExceededError(
            "the Python peer did not print its port in time");
      }
      char buf[256];
      ssize_t n = ::read(stdout_, buf, sizeof(buf));
      if (n <= 0) {
        return absl::UnavailableError(
            "the Python peer exited before serving (its stderr is above)");
      }
      out.append(buf, static_cast<size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  int port_ = 0;
};

// ---------------------------------------------------------------------------
// Weights

// A weight version with the tensors of Qwen2.5-0.5B (hidden 896, MLP 4864, 14
// heads / 2 KV heads of 64): as many decoder layers as fit in `bytes`, then the
// final norm, and the embedding with as many vocabulary rows as fill the rest.
// Random f32 values.
common::WeightVersion QwenShapedVersion(uint64_t bytes, size_t chunk_bytes,
                                        std::string* summary) {
  constexpr int64_t kHidden = 896, kMlp = 4864, kKv = 2 * 64;
  const std::vector<std::pair<std::string, std::vector<int64_t>>> layer = {
      {"self_attn.q_proj.weight", {kHidden, kHidden}},
      {"self_attn.q_proj.bias", {kHidden}},
      {"self_attn.k_proj.weight", {kKv, kHidden}},
      {"self_attn.k_proj.bias", {kKv}},
      {"self_attn.v_proj.weight", {kKv, kHidden}},
      {"self_attn.v_proj.bias", {kKv}},
      {"self_attn.o_proj.weight", {kHidden, kHidden}},
      {"mlp.gate_proj.weight", {kMlp, kHidden}},
      {"mlp.up_proj.weight", {kMlp, kHidden}},
      {"mlp.down_proj.weight", {kHidden, kMlp}},
      {"input_layernorm.weight", {kHidden}},
      {"post_attention_layernorm.weight", {kHidden}}};
  int64_t layer_floats = 0;
  for (const auto& [name, shape] : layer) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    layer_floats += n;
  }
  const int64_t floats =
      std::max<int64_t>(static_cast<int64_t>(bytes / 4), 2 * kHidden);
  const int64_t layers = (floats - 2 * kHidden) / layer_floats;
  const int64_t rows = std::min<int64_t>(
      kQwenVocab,
      std::max<int64_t>(1, (floats - kHidden - layers * layer_floats) / kHidden));
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors = {
      {"model.embed_tokens.weight", {rows, kHidden}}};
  for (int64_t l = 0; l < layers; ++l) {
    for (const auto& [name, shape] : layer) {
      tensors.push_back({absl::StrCat("model.layers.", l, ".", name), shape});
    }
  }
  tensors.push_back({"model.norm.weight", {kHidden}});
  common::WeightVersion v;
  uint64_t offset = 0;
  for (const auto& [name, shape] : tensors) {
    v1::TensorInfo* t = v.manifest.add_tensors();
    t->set_name(name);
    t->set_dtype(v1::DTYPE_F32);
    uint64_t n = 4;
    for (int64_t d : shape) {
      t->add_shape(d);
      n *= static_cast<uint64_t>(d);
    }
    t->set_offset(offset);
    t->set_num_bytes(n);
    offset += n;
  }
  v.bytes.resize(offset);
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> block(1 << 16);
  for (float& f : block) f = normal(rng);
  for (uint64_t at = 0; at < offset; at += block.size() * 4) {
    std::memcpy(v.bytes.data() + at, block.data(),
                std::min<uint64_t>(block.size() * 4, offset - at));
    block[at / 4 % block.size()] += 1e-3f;  // no two blocks alike
  }
  v.manifest.set_total_bytes(offset);
  v.manifest.set_crc32c(common::Crc32c(v.bytes.data(), v.bytes.size()));
  // As model::EncodeWeights gives them, from the pass that writes the bytes.
  v.chunk_crc_bytes = chunk_bytes;
  v.chunk_crcs = common::ChunkCrcs(v, chunk_bytes);
  *summary = absl::StrFormat(
      "%.1f MB of f32 in %d tensors (Qwen2.5-0.5B shapes: %d decoder layers of "
      "hidden 896 / MLP 4864, embedding %d of %d rows)",
      offset / 1e6, v.manifest.tensors_size(), layers, rows, kQwenVocab);
  return v;
}

// Follows SubscribeWeights as an actor does (ReadWeightStream into a
// WeightAssembler, which checks offsets, per-chunk and whole-version CRC-32C) and
// notes when each version is complete.
class WeightSubscriber {
 public:
  WeightSubscriber(std::shared_ptr<grpc::Channel> channel, std::string actor_id)
      : channel_(channel),
        stub_(LearnerService::NewStub(channel)),
        actor_id_(std::move(actor_id)) {}
  ~WeightSubscriber() {
    ctx_.TryCancel();
    if (thread_.joinable()) thread_.join();
  }
  absl::Status Start() {
    RETURN_IF_ERROR(RegisterActor(*stub_, actor_id_, /*group_size=*/0));
    thread_ = std::thread([this] { Loop(); });
    return absl::OkStatus();
  }
  // When version `v` was complete; the stream's error if it broke first.
  absl::StatusOr<absl::Time> WaitFor(uint64_t v, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto ready = [&] { return !error_.ok() || done_version_ >= v; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("weight version ", v, " did not arrive in time"));
    }
    if (!error_.ok()) return error_;
    return done_at_;
  }

 private:
  void Loop() {
    v1::SubscribeWeightsRequest req;
    req.set_actor_id(actor_id_);
    common::WeightAssembler assembler;
    absl::Status error;
    grpc::Status st = common::ReadWeightStream(
        channel_, &ctx_, req, &assembler,
        [&](std::shared_ptr<common::WeightVersion> v) {
          absl::Time now = absl::Now();
          if (v->bytes.size() != v->manifest.total_bytes()) {
            error = absl::DataLossError("an assembled version has the wrong size");
            ctx_.TryCancel();
            return;
          }
          absl::MutexLock lock(&mu_);
          done_version_ = v->manifest.version();
          done_at_ = now;
        });
    if (error.ok()) {
      error = absl::UnavailableError(
          absl::StrCat("the weight stream ended: ", st.error_message()));
    }
    absl::MutexLock lock(&mu_);
    error_ = error;
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<LearnerService::Stub> stub_;
  const std::string actor_id_;
  grpc::ClientContext ctx_;
  std::thread thread_;
  absl::Mutex mu_;
  uint64_t done_version_ = 0;  // guarded by mu_
  absl::Time done_at_;         // guarded by mu_
  absl::Status error_;         // guarded by mu_
};

// The limit: `src` sent to `receivers` receivers at once, each over a fresh
// loopback TCP connection, with plain send() and recv() on a thread per end. Each
// receiver writes into a buffer allocated and touched once, outside the rounds: the
// whole size, or 64 MiB that it cycles through for larger versions (so that 16
// receivers of 2 GiB fit in memory; the bytes still cross the kernel and land in
// memory too large for the caches, as the subscribers' do).
class RawTcpCopy {
 public:
  static constexpr size_t kMaxBuffer = size_t{64} << 20;

  static absl::StatusOr<std::unique_ptr<RawTcpCopy>> Create(const std::string* src,
                                                            int receivers) {
    auto r = std::unique_ptr<RawTcpCopy>(new RawTcpCopy(src));
    r->listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (r->listener_ < 0 ||
        ::bind(r->listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(r->listener_, receivers) != 0 ||
        ::getsockname(r->listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return common::ErrnoToStatus(errno, "raw TCP listener on 127.0.0.1");
    }
    r->addr_ = addr;
    SetTimeout(r->listener_);
    r->dst_.resize(receivers);
    for (std::string& d : r->dst_) {
      d.resize(std::min(src->size(), kMaxBuffer));  // touched once, outside the rounds
    }
    return r;
  }
  ~RawTcpCopy() {
    if (listener_ >= 0) ::close(listener_);
  }

  // One copy to every receiver; returns the GB/s delivered (bytes x receivers).
  absl::StatusOr<double> Round() {
    const int n = static_cast<int>(dst_.size());
    std::vector<absl::Status> sent(n), received(n);
    const absl::Time start = absl::Now();
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] { sent[i] = Send(); });
    }
    for (int i = 0; i < n; ++i) {
      // Connections are accepted in any order; any buffer will do.
      threads.emplace_back([&, i] { received[i] = Receive(&dst_[i]); });
    }
    for (std::thread& t : threads) t.join();
    const absl::Duration took = absl::Now() - start;
    for (int i = 0; i < n; ++i) {
      RETURN_IF_ERROR(sent[i]);
      RETURN_IF_ERROR(received[i]);
    }
    return static_cast<double>(src_->size()) * n / absl::ToDoubleSeconds(took) / 1e9;
  }

 private:
  explicit RawTcpCopy(const std::string* src) : src_(src) {}
  static void SetTimeout(int fd) {
    timeval tv{/*tv_sec=*/60, /*tv_usec=*/0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  absl::Status Send() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return common::ErrnoToStatus(errno, "socket");
    SetTimeout(fd);
    absl::Status st;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof(addr_)) != 0) {
      st = common::ErrnoToStatus(errno, "connect to the raw TCP listener");
    }
    for (size_t at = 0; st.ok() && at < src_->size();) {
      ssize_t n = ::send(fd, src_->data() + at, src_->size() - at, MSG_NOSIGNAL);
      if (n <= 0) st = common::ErrnoToStatus(errno, "send");
      at += n > 0 ? static_cast<size_t>(n) : 0;
    }
    ::close(fd);
    return st;
  }
  absl::Status Receive(std::string* dst) {
    int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return common::ErrnoToStatus(errno, "accept on the raw TCP listener");
    SetTimeout(fd);
    absl::Status st;
    for (size_t got = 0; st.ok() && got < src_->size();) {
      const size_t at = got % dst->size();
      const size_t want = std::min(dst->size() - at, src_->size() - got);
      ssize_t n = ::recv(fd, dst->data() + at, want, 0);
      if (n <= 0) st = absl::DataLossError("raw TCP copy: the connection ended early");
      got += n > 0 ? static_cast<size_t>(n) : 0;
    }
    ::close(fd);
    return st;
  }

  const std::string* const src_;
  int listener_ = -1;
  sockaddr_in addr_{};
  std::vector<std::string> dst_;
};

// ---------------------------------------------------------------------------
// Driver

// Wraps a probe to print one progress line per round to stderr.
Probe WithProgress(const SideBySideOptions& o, const std::string& label, Probe probe) {
  auto calls = std::make_shared<int>(0);
  return [o, label, probe, calls]() -> absl::StatusOr<double> {
    const int i = (*calls)++;
    const bool warm = i < o.warmup;
    absl::StatusOr<double> v = probe();
    if (v.ok()) {
      std::cerr << absl::StrFormat(
          "[%s] %-14s %-7s %d/%d: %.4g %s\n", o.name, label, warm ? "warm-up" : "round",
          warm ? i + 1 : i - o.warmup + 1, warm ? o.warmup : o.rounds, *v, o.unit);
    }
    return v;
  };
}

absl::Status Report(const SideBySideResult& r, const BenchOptions& o) {
  std::cout << FormatResult(r) << std::flush;
  return WriteResultJson(r, absl::StrCat(o.out, "/", r.options.name, ".json"));
}

std::string SourceDir() {
  const char* env = std::getenv("NBRL_SOURCE_DIR");
  return env != nullptr && *env != '\0' ? env : NBRL_DEFAULT_SOURCE_DIR;
}

absl::StatusOr<std::optional<SideBySideResult>> RunIngestion(const BenchOptions& o) {
  if (RunQuietly({o.python, "-c", "import grpc, grpc_tools.protoc"}) != 0) {
    std::cout << "SKIPPED ingestion vs Python: " << o.python
              << " cannot import grpc and grpc_tools (apt-get install "
                 "python3-grpcio python3-grpc-tools, or deploy/setup.sh)\n";
    return std::nullopt;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<InProcessLearner> ours, InProcessLearner::Start(o));
  ASSIGN_OR_RETURN(std::unique_ptr<PythonPeer> peer,
                   PythonPeer::Start(o.python, SourceDir() + "/bench/learner_peer.py",
                                     SourceDir() + "/proto"));
  const std::string actor = "bench/actor0";
  auto ours_stub = LearnerService::NewStub(Connect(ours->port()));
  auto peer_stub = LearnerService::NewStub(Connect(peer->port()));
  RETURN_IF_ERROR(RegisterActor(*ours_stub, actor, o.group_size));
  RETURN_IF_ERROR(RegisterActor(*peer_stub, actor, o.group_size));
  const v1::TrajectoryGroup group = PreEncoded(MakeGroup(o, actor));
  std::cout << absl::StrFormat(
      "ingestion: %d groups per round of %d trajectories x %d tokens, %d steps each "
      "(%.1f kB on the wire), %d stream(s) with window %d, learner journal %s\n",
      o.groups, o.group_size, o.tokens, o.steps, group.ByteSizeLong() / 1e3, o.streams,
      o.window,
      o.journal == "off" ? "off" : absl::StrCat(o.journal, " (", o.out, "/journal)"));

  SideBySideOptions s{.name = "learner_ingest",
                      .rounds = o.rounds,
                      .warmup = o.warmup,
                      .unit = "groups/s",
                      .higher_is_better = true,
                      .measured_label = "nbrl",
                      .baseline_label = "python grpcio"};
  int round = 0;
  // S streams at once, the groups split between them; the rate is all groups over
  // the time until the last stream has its acks.
  // Each stream on a connection of its own, as each actor has.
  auto stubs_of = [&](int port) {
    std::vector<std::unique_ptr<LearnerService::Stub>> stubs;
    for (int k = 0; k < o.streams; ++k) {
      stubs.push_back(LearnerService::NewStub(Connect(port, /*own_connection=*/true)));
    }
    return stubs;
  };
  auto ours_streams = stubs_of(ours->port()), peer_streams = stubs_of(peer->port());
  auto push = [&](std::vector<std::unique_ptr<LearnerService::Stub>>* stubs,
                  const std::string& side) -> Probe {
    return [&, stubs, side]() -> absl::StatusOr<double> {
      const std::string tag = absl::StrCat(side, "-", round++);
      if (o.streams == 1)
        return PushGroups(*(*stubs)[0], group, o.groups, o.window, tag);
      std::vector<absl::StatusOr<double>> rates(o.streams, 0.0);
      std::vector<std::thread> threads;
      const absl::Time start = absl::Now();
      for (int k = 0; k < o.streams; ++k) {
        const int n = o.groups / o.streams + (k < o.groups % o.streams ? 1 : 0);
        threads.emplace_back([&, k, n] {
          rates[k] =
              PushGroups(*(*stubs)[k], group, n, o.window, absl::StrCat(tag, "s", k));
        });
      }
      for (std::thread& t : threads) t.join();
      const absl::Duration took = absl::Now() - start;
      for (const auto& r : rates) RETURN_IF_ERROR(r.status());
      return o.groups / absl::ToDoubleSeconds(took);
    };
  };
  ASSIGN_OR_RETURN(
      SideBySideResult r,
      RunSideBySide(s, WithProgress(s, "nbrl", push(&ours_streams, "n")),
                    WithProgress(s, "python grpcio", push(&peer_streams, "p"))));
  learner::IngestorStats stats = ours->stats();
  const uint64_t expected = static_cast<uint64_t>(o.groups) * (o.rounds + o.warmup);
  if (stats.accepted != expected) {
    return absl::InternalError(absl::StrCat("the learner accepted ", stats.accepted,
                                            " groups, expected ", expected));
  }
  RETURN_IF_ERROR(Report(r, o));
  return r;
}

// MemAvailable from /proc/meminfo, in bytes; 0 when unknown.
uint64_t MemAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

struct WeightsCell {
  int mib = 0;
  int subscribers = 0;
  std::optional<SideBySideResult> result;  // absent: skipped
  std::string skipped;                     // why
};

absl::StatusOr<WeightsCell> RunWeightsCell(const BenchOptions& o, int mib, int n) {
  WeightsCell cell{mib, n, std::nullopt, ""};
  const uint64_t size = static_cast<uint64_t>(mib) << 20;
  // The source, the copy each round publishes, one version per subscriber (each
  // keeps its buffer for the next), and the raw receivers' buffers.
  const uint64_t need =
      size * (2 + static_cast<uint64_t>(n)) +
      std::min<uint64_t>(size, RawTcpCopy::kMaxBuffer) * static_cast<uint64_t>(n);
  const uint64_t available = MemAvailableBytes();
  if (available != 0 && need > available / 10 * 8) {
    cell.skipped = absl::StrFormat(
        "needs %.1f GB of memory (%d subscribers each holding the version), %.1f GB "
        "available",
        need / 1e9, n, available / 1e9);
    std::cout << absl::StrFormat("SKIPPED weights %d MiB x %d: %s\n", mib, n,
                                 cell.skipped);
    return cell;
  }
  std::string summary;
  const common::WeightVersion base =
      QwenShapedVersion(size, static_cast<size_t>(o.chunk_kb) * 1024, &summary);
  std::cout << absl::StrFormat(
      "weights %d MiB x %d subscribers: %s, chunks of %d KiB\n", mib, n, summary,
      o.chunk_kb);
  ASSIGN_OR_RETURN(std::unique_ptr<InProcessLearner> ours, InProcessLearner::Start(o));
  std::vector<std::unique_ptr<WeightSubscriber>> subscribers;
  for (int i = 0; i < n; ++i) {
    subscribers.push_back(std::make_unique<WeightSubscriber>(
        Connect(ours->port(), /*own_connection=*/true),
        absl::StrCat("bench/weights", i)));
    RETURN_IF_ERROR(subscribers.back()->Start());
  }
  ASSIGN_OR_RETURN(std::unique_ptr<RawTcpCopy> raw, RawTcpCopy::Create(&base.bytes, n));

  uint64_t version = 0;
  Probe stream = [&]() -> absl::StatusOr<double> {
    auto v = std::make_shared<common::WeightVersion>(base);  // untimed copy
    v->manifest.set_version(++version);
    const absl::Time start = absl::Now();
    ours->publisher().Publish(std::move(v));
    absl::Time last = start;
    for (auto& sub : subscribers) {
      ASSIGN_OR_RETURN(absl::Time done, sub->WaitFor(version, start + kRoundDeadline));
      last = std::max(last, done);
    }
    return static_cast<double>(base.bytes.size()) * n /
           absl::ToDoubleSeconds(last - start) / 1e9;
  };
  SideBySideOptions s{.name = absl::StrFormat("learner_weights_%dMiB_x%d", mib, n),
                      .rounds = o.rounds,
                      .warmup = o.warmup,
                      .unit = "GB/s",
                      .higher_is_better = true,
                      .measured_label = "nbrl",
                      .baseline_label = "raw TCP"};
  ASSIGN_OR_RETURN(
      SideBySideResult r,
      RunSideBySide(s, WithProgress(s, "nbrl", stream),
                    WithProgress(s, "raw TCP", [&] { return raw->Round(); })));
  RETURN_IF_ERROR(Report(r, o));
  cell.result = std::move(r);
  return cell;
}

absl::StatusOr<std::vector<WeightsCell>> RunWeights(const BenchOptions& o) {
  std::vector<WeightsCell> cells;
  for (int mib : o.weight_mib) {
    for (int n : o.subscribers) {
      ASSIGN_OR_RETURN(WeightsCell cell, RunWeightsCell(o, mib, n));
      cells.push_back(std::move(cell));
    }
  }
  return cells;
}

absl::Status Run(const BenchOptions& o) {
  std::optional<SideBySideResult> ingest;
  std::vector<WeightsCell> weights;
  if (o.ingest) {
    ASSIGN_OR_RETURN(ingest, RunIngestion(o));
  }
  if (o.weights) {
    ASSIGN_OR_RETURN(weights, RunWeights(o));
  }
  std::cout << "\nsummary (medians; ratio = nbrl / baseline, > 1: nbrl is faster)\n";
  if (ingest) {
    // The same group each time, so MB/s is groups/s times its size on the wire.
    const double mb = PreEncoded(MakeGroup(o, "bench/actor0")).ByteSizeLong() / 1e6;
    std::cout << absl::StrFormat(
        "  ingestion  nbrl %9.1f groups/s (%6.1f MB/s)   python grpcio %9.1f groups/s "
        "(%6.1f MB/s)   ratio %.2fx   (%d stream(s), %.1f kB a group)\n",
        ingest->measured.median, ingest->measured.median * mb, ingest->baseline.median,
        ingest->baseline.median * mb, ingest->ratio, o.streams, mb * 1e3);
  }
  for (const WeightsCell& c : weights) {
    const std::string label = absl::StrFormat("%5d MiB x %2d", c.mib, c.subscribers);
    if (!c.result) {
      std::cout << "  weights " << label << "  skipped: " << c.skipped << "\n";
      continue;
    }
    // The target: publication within 1.5x of the raw copy's time.
    std::cout << absl::StrFormat(
        "  weights %s  nbrl %7.3f GB/s   raw TCP %7.3f GB/s   ratio %.2fx   time "
        "%.2fx the raw copy's\n",
        label, c.result->measured.median, c.result->baseline.median, c.result->ratio,
        1.0 / c.result->ratio);
  }
  return absl::OkStatus();
}

constexpr char kUsage[] = R"(usage: nbrl-learner-bench [flags]

The learner's gRPC paths side by side with a baseline each, in one run:
trajectory ingestion (groups/s) against a Python grpcio learner
(bench/learner_peer.py), and the weight stream (GB/s) against a raw loopback TCP
copy of the same bytes. Prints medians and ratios; writes DIR/learner_ingest.json
and DIR/learner_weights.json.

  --quick             a smoke run of a few seconds (--rounds 2 --groups 150
                      --weight-mib 64 --subscribers 1,4); flags after it still
                      apply
  --rounds N          timed rounds of each side (7)
  --warmup N          untimed rounds of each side first (1)
  --groups N          trajectory groups per ingestion round (2000)
  --group-size N      trajectories per group (4)
  --tokens N          tokens per trajectory (2000)
  --steps N           steps per trajectory (8)
  --window N          groups in flight on the stream, unacknowledged (16)
  --streams N         concurrent streams (actors), the groups split between
                      them (1; at most 64)
  --weight-mib LIST   sizes of the weight version in MiB (64,512,2048)
  --subscribers LIST  subscriber counts, each size streamed to that many at
                      once (1,4,16); a size x count that does not fit in memory
                      is skipped, saying so
  --chunk-kb N        weight chunk size in KiB (1024, the learner's default)
  --only ingest|weights   run one of the two
  --journal off|write|sync  the learner's journal of accepted groups: off (as
                      the Python peer), write (learner.journal_sync=false) or
                      sync (nbrl-learner's default: fdatasync per group), in
                      OUT/journal, removed at the end
  --python PATH       interpreter of the Python peer (/usr/bin/python3)
  --out DIR           where the JSON results go (bench-results)
  --help

NBRL_SOURCE_DIR (default: the source tree built from) locates bench/ and proto/.
)";

// "1,4,16": positive integers up to `max`.
bool ParseList(const std::string& text, int max, std::vector<int>* out) {
  out->clear();
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0 || v > max) return false;
    out->push_back(v);
  }
  return !out->empty();
}

// Returns 0 when options are set, 1 for --help, 2 for a usage error.
int ParseFlags(int argc, char** argv, BenchOptions* o) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick") {
      o->rounds = 2, o->groups = 150, o->weight_mib = {64}, o->subscribers = {1, 4};
    }
  }
  std::map<std::string, std::function<bool(const std::string&)>> flags = {
      {"--rounds",
       [&](auto v) { return absl::SimpleAtoi(v, &o->rounds) && o->rounds > 0; }},
      {"--warmup",
       [&](auto v) { return absl::SimpleAtoi(v, &o->warmup) && o->warmup >= 0; }},
      {"--groups",
       [&](auto v) { return absl::SimpleAtoi(v, &o->groups) && o->groups > 0; }},
      {"--group-size",
       [&](auto v) {
         return absl::SimpleAtoi(v, &o->group_size) && o->group_size > 0;
       }},
      {"--tokens",
       [&](auto v) { return absl::SimpleAtoi(v, &o->tokens) && o->tokens > 0; }},
      {"--steps",
       [&](auto v) { return absl::SimpleAtoi(v, &o->steps) && o->steps > 0; }},
      {"--window",
       [&](auto v) { return absl::SimpleAtoi(v, &o->window) && o->window > 0; }},
      {"--streams",
       [&](auto v) {
         return absl::SimpleAtoi(v, &o->streams) && o->streams > 0 && o->streams <= 64;
       }},
      {"--weight-mib", [&](auto v) { return ParseList(v, 1 << 16, &o->weight_mib); }},
      {"--subscribers", [&](auto v) { return ParseList(v, 256, &o->subscribers); }},
      {"--chunk-kb",
       [&](auto v) { return absl::SimpleAtoi(v, &o->chunk_kb) && o->chunk_kb > 0; }},
      {"--only",
       [&](auto v) {
         o->ingest = v == "ingest", o->weights = v == "weights";
         return o->ingest || o->weights;
       }},
      {"--journal",
       [&](auto v) {
         o->journal = v;
         return v == "off" || v == "write" || v == "sync";
       }},
      {"--python", [&](auto v) { return o->python = v, !v.empty(); }},
      {"--out", [&](auto v) { return o->out = v, !v.empty(); }}};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--quick") continue;
    if (flag == "--help" || flag == "-h") return 1;
    auto it = flags.find(flag);
    if (it == flags.end() || i + 1 >= argc || !it->second(argv[++i])) {
      std::cerr << "nbrl-learner-bench: bad flag or value: " << flag
                << " (try --help)\n";
      return 2;
    }
  }
  if (o->streams > o->groups) {
    std::cerr << "nbrl-learner-bench: --streams " << o->streams
              << " is more than --groups " << o->groups
              << " (each stream needs a group)\n";
    return 2;
  }
  if (o->tokens - o->tokens / 5 < 2 * o->steps) {
    std::cerr << "nbrl-learner-bench: --tokens " << o->tokens << " is too few for "
              << o->steps << " steps (each needs an action and an observation)\n";
    return 2;
  }
  return 0;
}

}  // namespace
}  // namespace nbrl::bench

int main(int argc, char** argv) {
  nbrl::bench::BenchOptions o;
  if (int rc = nbrl::bench::ParseFlags(argc, argv, &o); rc != 0) {
    if (rc == 1) std::cout << nbrl::bench::kUsage;
    return rc == 1 ? 0 : rc;
  }
  (void)nbrl::common::InitLogging({.tag = "learner-bench", .level = "warning"});
  // As nbrl-learner and nbrl-actor do (RunProgram): freed buffers stay mapped.
  nbrl::common::KeepFreedMemoryForReuse();
  if (absl::Status s = nbrl::bench::Run(o); !s.ok()) {
    std::cerr << "nbrl-learner-bench: " << s << "\n";
    return 1;
  }
  return 0;
}
