// The scripted expert solves task-world questions through a real nbrl-sandbox
// (bubblewrap, the Python REPL driver, the Xapian search tools) over gRPC, driven by
// the real episode loop: issue 5's bar is at least 95% exact match.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "actor/grpc_sandbox_client.h"
#include "actor/trajectory_proto.h"
#include "agent/episode_runner.h"
#include "agent/prompts.h"
#include "agent/scripted_policy.h"
#include "agent/task_family.h"
#include "agent/task_world.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/bpe_trainer.h"
#include "model/checkpoint.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace nbrl {
namespace {

class ScriptedExpertTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new testutil::TempDir("nbrl-expert");
    dir_ = new std::string(tmp_->path());
    agent::TaskWorldOptions o;
    o.seed = 11;
    o.people = 80;
    o.organisations = 30;
    o.cities = 16;
    o.works = 40;
    o.train_questions = 0;
    o.val_questions = 0;
    o.test_questions = 40;
    auto world = agent::BuildTaskWorld(o);
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = new agent::TaskWorld(*std::move(world));
    ASSERT_TRUE(agent::WriteTaskWorld(*world_, *dir_).ok());

    std::string sandbox = testutil::BinaryPath("sandbox_worker/nbrl-sandbox");
    auto index = testutil::RunCommand({sandbox, "index", *dir_ + "/corpus.jsonl",
                                       *dir_ + "/index", "run.dir=" + *dir_,
                                       "metrics.enabled=false"});
    ASSERT_TRUE(index.ok()) << index.status();
    ASSERT_EQ(index->exit_code, 0) << index->err;

    address_ = new std::string("unix:" + *dir_ + "/sandbox.sock");
    auto p = testutil::Subprocess::Start(
        {sandbox, "serve", "sandbox.address=" + *address_,
         "sandbox.tools.index=" + *dir_ + "/index", "run.dir=" + *dir_,
         "metrics.enabled=false", "sandbox.warm_sessions=4", "log.level=warning"});
    ASSERT_TRUE(p.ok()) << p.status();
    server_ = p->release();
    auto ready = server_->WaitForLine("ready", absl::Seconds(60));
    ASSERT_TRUE(ready.ok()) << ready.status();

    // A tokenizer trained on the corpus (the episode loop records token ids).
    std::string corpus;
    for (const auto& d : world_->documents) absl::StrAppend(&corpus, d.text, "\n");
    for (int i = 0; i < 50; ++i) {
      absl::StrAppend(
          &corpus,
          "<think>I will look up</think>\n<code>\nhits = web_search(title, k=5)\n"
          "notepad.add_facts(v0)\nsubmit_final_answer(str(answer))\n</code>\n");
    }
    model::BpeTrainerOptions bo;
    bo.vocab_size = 2000;
    auto files = model::TrainBpeTokenizer(corpus, bo);
    ASSERT_TRUE(files.ok()) << files.status();
    ASSERT_TRUE(model::WriteTokenizerFiles(*files, *dir_ + "/tokenizer").ok());
    auto tok = model::Tokenizer::Load(*dir_ + "/tokenizer");
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = tok->release();
    auto chat = model::ChatTemplate::Create(tokenizer_);
    ASSERT_TRUE(chat.ok());
    chat_ = chat->release();
  }
  static void TearDownTestSuite() {
    if (server_) {
      (void)server_->Signal(SIGTERM);
      auto st = server_->Wait(absl::Seconds(30));
      EXPECT_TRUE(st.ok() && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
          << "nbrl-sandbox did not stop cleanly: " << server_->stderr_text();
      delete server_;
      server_ = nullptr;
    }
    delete tmp_;  // after the server that wrote into it
    tmp_ = nullptr;
  }

  // Exact-match rate of the scripted policy with `noise` on the test split.
  double RunExpert(double noise, std::vector<agent::TrajectoryRecord>* records) {
    actor::GrpcSandboxOptions so;
    so.address = *address_;
    so.client_id = "test-actor";
    auto client = actor::GrpcSandboxClient::Create(so);
    EXPECT_TRUE(client.ok());
    agent::ScriptedPolicyOptions po;
    po.noise = noise;
    po.seed = 3;
    agent::ScriptedPolicy policy(tokenizer_, po);
    agent::EpisodeOptions eo;
    eo.max_steps = 6;
    eo.system_prompt = agent::SystemPrompt(agent::SearchTools(), eo.max_steps);
    eo.context.context_tokens = 16384;
    eo.context.max_action_tokens = 1024;
    agent::EpisodeRunner runner(tokenizer_, chat_, &policy, client->get(), eo);
    int correct = 0, total = 0;
    const auto& test = world_->test;
    for (size_t start = 0; start < test.size(); start += 8) {
      std::vector<agent::EpisodeTask> tasks;
      for (size_t i = start; i < std::min(test.size(), start + 8); ++i) {
        agent::EpisodeTask t;
        t.episode_id = i;
        t.trajectory_id = test[i].id;
        t.example = test[i];
        t.task_text = test[i].question;
        tasks.push_back(t);
      }
      auto out = runner.Run(tasks);
      EXPECT_TRUE(out.ok()) << out.status();
      if (!out.ok()) return 0;
      for (auto& r : *out) {
        ++total;
        if (r.final_rewards["em_raw"] == 1.0) ++correct;
        records->push_back(std::move(r));
      }
    }
    return static_cast<double>(correct) / total;
  }

  static testutil::TempDir* tmp_;
  static std::string* dir_;
  static std::string* address_;
  static agent::TaskWorld* world_;
  static testutil::Subprocess* server_;
  static model::Tokenizer* tokenizer_;
  static model::ChatTemplate* chat_;
};
testutil::TempDir* ScriptedExpertTest::tmp_ = nullptr;
std::string* ScriptedExpertTest::dir_ = nullptr;
std::string* ScriptedExpertTest::address_ = nullptr;
agent::TaskWorld* ScriptedExpertTest::world_ = nullptr;
testutil::Subprocess* ScriptedExpertTest::server_ = nullptr;
model::Tokenizer* ScriptedExpertTest::tokenizer_ = nullptr;
model::ChatTemplate* ScriptedExpertTest::chat_ = nullptr;

TEST_F(ScriptedExpertTest, SolvesAtLeast95PercentThroughRealSandboxes) {
  std::vector<agent::TrajectoryRecord> records;
  double em = RunExpert(/*noise=*/0.0, &records);
  int submitted = 0;
  for (const auto& r : records) {
    if (r.ending_reason == agent::EndingReason::kSubmitted) ++submitted;
    if (r.final_rewards.at("em_raw") != 1.0) {
      ADD_FAILURE() << r.example_id << " ended "
                    << agent::EndingReasonName(r.ending_reason) << " with '"
                    << r.final_answer << "'; last observation: "
                    << (r.steps.empty() ? "" : r.steps.back().observation_text);
    }
  }
  std::cout << "scripted expert (no noise): EM " << em << " over " << records.size()
            << " test questions" << std::endl;
  EXPECT_GE(em, 0.95);
  EXPECT_EQ(submitted, static_cast<int>(records.size()));
  // The records are valid wire trajectories: every step is well formed and ran.
  for (const auto& r : records) {
    v1::Trajectory t = actor::ToProto(r);
    EXPECT_EQ(t.token_ids_size(), t.behavior_logprobs_size());
    for (const auto& s : r.steps) {
      EXPECT_TRUE(s.well_formed) << r.example_id;
      EXPECT_TRUE(s.executed_ok) << r.example_id << ": " << s.observation_text;
    }
  }
}

TEST_F(ScriptedExpertTest, NoiseMakesTheDemonstrationsImperfect) {
  std::vector<agent::TrajectoryRecord> clean, noisy;
  double em_clean = RunExpert(0.0, &clean);
  double em_noisy = RunExpert(0.5, &noisy);
  std::cout << "scripted expert: EM " << em_clean << " clean, " << em_noisy
            << " with noise 0.5" << std::endl;
  EXPECT_LT(em_noisy, em_clean);
  EXPECT_GT(em_noisy, 0.3);
}

TEST_F(ScriptedExpertTest, AnswersDirectlyWhereThereIsNoPlan) {
  agent::Example ex;
  ex.id = "d1";
  ex.question = "Say yes.";
  ex.answers = {"yes"};
  agent::PolicyRequest req;
  req.episode_id = 1;
  req.view.example = &ex;
  agent::ScriptedPolicy exact(tokenizer_, {});
  auto text = exact.ActionText(req);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text,
            "<think>I know the answer.</think>\n<code>\nsubmit_final_answer(\"yes\")"
            "\n</code>");
  agent::ScriptedPolicyOptions faulty;
  faulty.noise = 1.0;
  agent::ScriptedPolicy wrong(tokenizer_, faulty);
  text = wrong.ActionText(req);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_NE(text->find("submit_final_answer(\"yes1\")"), std::string::npos) << *text;
  ex.answers = {"café"};  // a fault keeps the answer valid UTF-8
  req.episode_id = 3;
  text = wrong.ActionText(req);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_NE(text->find("submit_final_answer(\"café1\")"), std::string::npos) << *text;
  ex.answers.clear();
  req.episode_id = 2;
  text = exact.ActionText(req);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(text.status().message().find("neither a solution plan"), std::string::npos)
      << text.status();
  ex.answers = {"yes"};
  ex.metadata_json = R"({"plan": [], "kind": "lookup"})";
  text = exact.ActionText(req);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(text.status().message().find("malformed solution plan"), std::string::npos)
      << text.status();
  ex.metadata_json = "{}";

  // Through a real sandbox, with the minimal family's verifier: every episode is
  // one action and an exact match.
  ex.answers = {"yes"};
  actor::GrpcSandboxOptions so;
  so.address = *address_;
  so.client_id = "test-direct";
  auto client = actor::GrpcSandboxClient::Create(so);
  ASSERT_TRUE(client.ok()) << client.status();
  auto family = agent::MakeTaskFamily("minimal");
  ASSERT_TRUE(family.ok());
  agent::EpisodeOptions eo;
  eo.family = family->get();
  eo.system_prompt = agent::SystemPrompt((*family)->tools(), eo.max_steps);
  agent::ScriptedPolicy policy(tokenizer_, {});
  agent::EpisodeRunner runner(tokenizer_, chat_, &policy, client->get(), eo);
  std::vector<agent::EpisodeTask> tasks(3);
  for (size_t i = 0; i < tasks.size(); ++i) {
    tasks[i].episode_id = 100 + i;
    tasks[i].trajectory_id = absl::StrCat("direct-", i);
    tasks[i].example = ex;
    tasks[i].task_text = (*family)->TaskText(ex);
  }
  auto out = runner.Run(tasks);
  ASSERT_TRUE(out.ok()) << out.status();
  for (const auto& r : *out) {
    EXPECT_EQ(r.steps.size(), 1u);
    EXPECT_TRUE(r.has_final_answer);
    EXPECT_EQ(r.final_answer, "yes");
    EXPECT_EQ(r.final_rewards.at("em_raw"), 1.0);
  }
}

TEST_F(ScriptedExpertTest, TheFaultListChoosesTheMistake) {
  // The names parse in order; a bad list is an error that names the problem.
  auto faults = agent::ParseScriptedFaults({"copy", "field"});
  ASSERT_TRUE(faults.ok()) << faults.status();
  EXPECT_EQ(*faults, (std::vector<agent::ScriptedFault>{agent::ScriptedFault::kCopy,
                                                        agent::ScriptedFault::kField}));
  for (const auto& [names, says] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"copy", "typo"}, "unknown fault 'typo'"},
           {{"check", "check"}, "'check' of the scripted expert is listed twice"},
           {{}, "fault list is empty"}}) {
    auto bad = agent::ParseScriptedFaults(names);
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bad.status().message().find(says), std::string::npos) << bad.status();
  }

  // A one-hop lookup: the first action does the hop, the second submits.
  agent::Example ex;
  ex.id = "l1";
  ex.question = "In which country is the city of Falfen?";
  ex.answers = {"Norland"};
  ex.metadata_json =
      R"({"kind": "lookup", "plan": [{"doc": "Falfen", "field": "Country"}]})";
  agent::CellResult ran;  // a cell that completed without an error
  auto actions = [&](agent::ScriptedFault only, uint64_t episode) {
    agent::ScriptedPolicyOptions o;
    o.noise = 1.0;
    o.faults = {only};
    agent::ScriptedPolicy policy(tokenizer_, o);
    agent::PolicyRequest req;
    req.episode_id = episode;
    req.view.example = &ex;
    std::string hop = policy.ActionText(req).value();
    req.view.step = 1;
    req.view.last_result = &ran;
    return std::make_pair(hop, policy.ActionText(req).value());
  };
  const std::string kUnchecked = "hit = hits[0] if hits else None";
  const std::string kCopyError = "answer = str(answer)[:-1]";
  // Every episode is faulty; each gets the one listed fault and no other.
  for (uint64_t episode = 1; episode <= 20; ++episode) {
    auto [hop, submit] = actions(agent::ScriptedFault::kCopy, episode);
    EXPECT_EQ(hop.find(kUnchecked), std::string::npos) << hop;
    EXPECT_NE(hop.find("Country: (.+)$"), std::string::npos) << hop;
    EXPECT_NE(submit.find(kCopyError), std::string::npos) << submit;
    std::tie(hop, submit) = actions(agent::ScriptedFault::kCheck, episode);
    EXPECT_NE(hop.find(kUnchecked), std::string::npos) << hop;
    EXPECT_NE(hop.find("Country: (.+)$"), std::string::npos) << hop;
    EXPECT_EQ(submit.find(kCopyError), std::string::npos) << submit;
    std::tie(hop, submit) = actions(agent::ScriptedFault::kField, episode);
    EXPECT_EQ(hop.find(kUnchecked), std::string::npos) << hop;
    EXPECT_EQ(hop.find("Country: (.+)$"), std::string::npos) << hop;
    EXPECT_EQ(submit.find(kCopyError), std::string::npos) << submit;
  }
}

TEST_F(ScriptedExpertTest, EvalCommandWritesEpisodesAndASummary) {
  std::string out = *dir_ + "/eval-scripted";
  auto r = testutil::RunCommand(
      {testutil::BinaryPath("cli/nbrl"), "eval", "--policy", "scripted", "--tokenizer",
       *dir_ + "/tokenizer", "--data", *dir_ + "/test.jsonl", "--sandbox", *address_,
       "--out", out, "--samples", "2", "--concurrency", "8"},
      absl::Seconds(300));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->exit_code, 0) << r->err;
  EXPECT_NE(r->out.find("pass@2"), std::string::npos) << r->out;
  auto summary = common::ReadFile(out + "/summary.json");
  ASSERT_TRUE(summary.ok());
  auto j = nlohmann::json::parse(*summary);
  EXPECT_EQ(j["episodes"], 80);
  EXPECT_EQ(j["questions"], 40);
  EXPECT_GE(j["em"]["mean"].get<double>(), 0.95);
  EXPECT_GE(j["pass_at_k"].get<double>(), 0.95);
  for (const char* kind : {"lookup", "bridge", "comparison", "arithmetic"}) {
    EXPECT_TRUE(j["em_by_kind"].contains(kind)) << kind;
  }
  auto episodes = common::ReadFile(out + "/episodes.jsonl");
  ASSERT_TRUE(episodes.ok());
  EXPECT_EQ(std::count(episodes->begin(), episodes->end(), '\n'), 80);
  EXPECT_NE(episodes->find("\"observation\""), std::string::npos);
  EXPECT_NE(episodes->find("<notepad>"), std::string::npos) << "the rendered context";
}

TEST_F(ScriptedExpertTest, EvalOfARandomSmallModelRunsToCompletion) {
  // A randomly initialised Qwen2-shaped model with the test tokenizer.
  std::string ckpt = *dir_ + "/random-model";
  model::ModelConfig c;
  c.vocab_size = tokenizer_->vocab_size();
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 4096;
  auto m = model::Transformer::Create(c, {});
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(model::SaveTransformer(**m, ckpt).ok());
  auto files = common::ReadFile(*dir_ + "/tokenizer/tokenizer.json");
  ASSERT_TRUE(files.ok());
  ASSERT_TRUE(common::WriteFileAtomically(ckpt + "/tokenizer.json", *files).ok());
  auto cfg = common::ReadFile(*dir_ + "/tokenizer/tokenizer_config.json");
  ASSERT_TRUE(cfg.ok());
  ASSERT_TRUE(common::WriteFileAtomically(ckpt + "/tokenizer_config.json", *cfg).ok());

  std::string out = *dir_ + "/eval-random";
  auto r = testutil::RunCommand(
      {testutil::BinaryPath("cli/nbrl"), "eval", "--policy", ckpt, "--data",
       *dir_ + "/test.jsonl", "--sandbox", *address_, "--out", out, "--limit", "4",
       "--max-steps", "2", "--concurrency", "4"},
      absl::Seconds(300));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->exit_code, 0) << r->err;
  auto j = nlohmann::json::parse(*common::ReadFile(out + "/summary.json"));
  EXPECT_EQ(j["episodes"], 4);
  EXPECT_LE(j["em"]["mean"].get<double>(), 0.25)
      << "a random model should not solve these";

  // The RL run's episode limits: a short action cap and the end at the first
  // malformed action (a random model writes nothing well-formed in 16 tokens).
  r = testutil::RunCommand({testutil::BinaryPath("cli/nbrl"),
                            "eval",
                            "--policy",
                            ckpt,
                            "--data",
                            *dir_ + "/test.jsonl",
                            "--sandbox",
                            *address_,
                            "--out",
                            out,
                            "--limit",
                            "4",
                            "--max-steps",
                            "4",
                            "--max-action-tokens",
                            "16",
                            "--max-format-errors",
                            "1",
                            "--threads",
                            "1"},
                           absl::Seconds(300));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->exit_code, 0) << r->err;
  // --threads sets both pools, and the run says what it runs with.
  EXPECT_NE(r->err.find("intra-op threads 1"), std::string::npos) << r->err;
  if (r->err.find("OpenBLAS threads") != std::string::npos) {
    EXPECT_NE(r->err.find("OpenBLAS threads 1"), std::string::npos) << r->err;
  }
  j = nlohmann::json::parse(*common::ReadFile(out + "/summary.json"));
  EXPECT_EQ(j["endings"].value("format_errors", 0), 4) << j.dump();
  EXPECT_DOUBLE_EQ(j["mean_steps"].get<double>(), 1.0) << j.dump();
  // Every one of the 4 malformed steps is listed with the parser's reason.
  int error_steps = j["step_errors_not_listed"]["steps"].get<int>();
  for (const auto& e : j["step_errors"]) error_steps += e["steps"].get<int>();
  EXPECT_EQ(error_steps, 4) << j.dump();
  std::ifstream episodes(out + "/episodes.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(episodes, line)) {
    ++lines;
    auto e = nlohmann::json::parse(line);
    ASSERT_EQ(e["steps"].size(), 1u) << line;
    EXPECT_LE(e["steps"][0]["action_tokens"].get<int>(), 16) << line;
    EXPECT_FALSE(e["steps"][0].value("error", "").empty()) << line;
  }
  EXPECT_EQ(lines, 4);

  r = testutil::RunCommand({testutil::BinaryPath("cli/nbrl"), "eval", "--policy", ckpt,
                            "--data", *dir_ + "/test.jsonl", "--sandbox", *address_,
                            "--out", out, "--max-action-tokens", "4"},
                           absl::Seconds(60));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_NE(r->err.find("--max-action-tokens needs a whole number from 8"),
            std::string::npos)
      << r->err;

  r = testutil::RunCommand(
      {testutil::BinaryPath("cli/nbrl"), "eval", "--policy", ckpt, "--data",
       *dir_ + "/test.jsonl", "--sandbox", *address_, "--out", out, "--threads", "-1"},
      absl::Seconds(60));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_NE(r->err.find("--threads needs a non-negative integer"), std::string::npos)
      << r->err;
}

TEST_F(ScriptedExpertTest, CodeFamilyRunsHiddenTestsInAFreshSession) {
  actor::GrpcSandboxOptions so;
  so.address = *address_;
  auto client = actor::GrpcSandboxClient::Create(so);
  ASSERT_TRUE(client.ok());
  auto family = *agent::MakeTaskFamily("code");
  agent::Example ex{"c1",
                    "Return the sum of a list of numbers, 0 for an empty list.",
                    {""},
                    R"({"entry_point": "total", "timeout_seconds": 2, "tests": [
                      "assert total([]) == 0", "assert total([1, 2]) == 3",
                      "assert total([-1, 1.5]) == 0.5", "assert secret_helper is None"]})"};
  // The agent's session defined a helper the verifier's fresh session never sees.
  auto good =
      family->Verify(ex, true, "def total(xs):\n    return sum(xs)\n", client->get());
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_DOUBLE_EQ(good->score, 0.75) << good->detail;
  auto partial = family->Verify(
      ex, true, "def total(xs):\n    return sum(int(x) for x in xs)\n", client->get());
  ASSERT_TRUE(partial.ok());
  EXPECT_DOUBLE_EQ(partial->score, 0.5) << partial->detail;
  auto broken = family->Verify(ex, true, "def total(xs) return 0", client->get());
  ASSERT_TRUE(broken.ok());
  EXPECT_EQ(broken->score, 0.0);
  EXPECT_NE(broken->detail.find("does not run"), std::string::npos) << broken->detail;
  // A submission that hangs costs its tests, not the verifier.
  auto hangs =
      family->Verify(ex, true, "def total(xs):\n    while True: pass\n", client->get());
  ASSERT_TRUE(hangs.ok()) << hangs.status();
  EXPECT_EQ(hangs->score, 0.0);
}

}  // namespace
}  // namespace nbrl
