#include "agent/episode_runner.h"

#include <map>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/prompts.h"
#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/bpe_trainer.h"
#include "tests/fakes/fake_sandbox.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::agent {
namespace {

using ::testing::HasSubstr;
using testutil::FakeSandbox;

// A small real tokenizer, trained once for the suite.
class Env : public ::testing::Environment {
 public:
  void SetUp() override {
    std::string corpus;
    for (int i = 0; i < 200; ++i) {
      absl::StrAppend(
          &corpus, "<think>search the founder</think><code>print(web_search('x'))",
          "</code> <output> notepad Step of submit_final_answer(", i, ")\n");
    }
    model::BpeTrainerOptions o;
    o.vocab_size = 600;
    auto files = model::TrainBpeTokenizer(corpus, o);
    ASSERT_TRUE(files.ok()) << files.status();
    testutil::TempDir tmp("episode-tok-");  // loaded into memory, then removed
    const std::string& dir = tmp.path();
    ASSERT_TRUE(model::WriteTokenizerFiles(*files, dir).ok());
    auto tok = model::Tokenizer::Load(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer = std::move(*tok);
    auto chat = model::ChatTemplate::Create(tokenizer.get());
    ASSERT_TRUE(chat.ok()) << chat.status();
    chat_template = std::move(*chat);
  }
  static std::unique_ptr<model::Tokenizer> tokenizer;
  static std::unique_ptr<model::ChatTemplate> chat_template;
};
std::unique_ptr<model::Tokenizer> Env::tokenizer;
std::unique_ptr<model::ChatTemplate> Env::chat_template;
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new Env);

// Plays fixed action texts per episode and step; records every request.
class ScriptPolicy : public Policy {
 public:
  explicit ScriptPolicy(std::map<uint64_t, std::vector<std::string>> script)
      : script_(std::move(script)) {}
  absl::StatusOr<std::vector<PolicyResponse>> Act(
      absl::Span<const PolicyRequest> requests) override {
    calls++;
    std::vector<PolicyResponse> out;
    for (const PolicyRequest& r : requests) {
      contexts[r.episode_id].emplace_back(r.context.begin(), r.context.end());
      const auto& steps = script_.at(r.episode_id);
      std::string text = steps[std::min<size_t>(r.view.step, steps.size() - 1)];
      PolicyResponse resp;
      resp.tokens = Env::tokenizer->Encode(text);
      for (size_t i = 0; i < resp.tokens.size(); ++i)
        resp.logprobs.push_back(-0.5f - i);
      resp.finished = true;
      resp.policy_version = 3;
      out.push_back(resp);
    }
    return out;
  }
  void EndEpisode(uint64_t id) override { ended.push_back(id); }

  int calls = 0;
  std::map<uint64_t, std::vector<std::vector<int32_t>>> contexts;
  std::vector<uint64_t> ended;

 private:
  std::map<uint64_t, std::vector<std::string>> script_;
};

EpisodeOptions Options() {
  EpisodeOptions o;
  o.max_steps = 4;
  o.system_prompt = SystemPrompt(SearchTools(), o.max_steps);
  o.context.context_tokens = 100000;
  o.context.max_action_tokens = 256;
  return o;
}

EpisodeTask Task(uint64_t id, std::vector<std::string> answers = {"Ana"}) {
  EpisodeTask t;
  t.episode_id = id;
  t.trajectory_id = absl::StrCat("t", id);
  t.example = {absl::StrCat("q", id), "Who founded X?", answers, "{}"};
  t.task_text = "Who founded X?";
  return t;
}

// Cells echo their code; code containing submit('A') submits A.
absl::StatusOr<CellResult> Echo(const std::string&, const std::string& code, int) {
  CellResult r;
  r.stdout_text = absl::StrCat("ran: ", code, "\n");
  r.notepad.facts = {"fact from the sandbox"};
  size_t p = code.find("submit('");
  if (p != std::string::npos) {
    r.has_final_answer = true;
    r.final_answer = code.substr(p + 8, code.find('\'', p + 8) - p - 8);
  }
  if (absl::StrContains(code, "raise")) {
    r.has_error = true;
    r.error_name = "ValueError";
    r.error_message = "boom";
    r.traceback = "Traceback ...\nValueError: boom";
  }
  return r;
}

std::vector<int32_t> Gather(const TrajectoryRecord& t, const std::vector<Span>& spans) {
  std::vector<int32_t> out;
  for (const Span& s : spans)
    out.insert(out.end(), t.tokens.begin() + s.begin, t.tokens.begin() + s.end);
  return out;
}

TEST(EpisodeRunnerTest, SubmittedAnswerIsRewardedAndRecorded) {
  FakeSandbox sandbox(Echo);
  ScriptPolicy policy({{1,
                        {"<think>look</think><code>x = 1</code>",
                         "<think>answer</think><code>submit('Ana')</code>"}}});
  EpisodeRunner runner(Env::tokenizer.get(), Env::chat_template.get(), &policy,
                       &sandbox, Options());
  auto out = runner.Run({Task(1)});
  ASSERT_TRUE(out.ok()) << out.status();
  const TrajectoryRecord& t = (*out)[0];
  EXPECT_EQ(t.ending_reason, EndingReason::kSubmitted);
  EXPECT_EQ(t.final_answer, "Ana");
  ASSERT_EQ(t.steps.size(), 2u);
  EXPECT_DOUBLE_EQ(t.final_rewards.at("em_raw"), 1.0);
  // em 1 + format 0.1 + execution 0.1
  EXPECT_NEAR(t.total_reward, 1.2, 1e-9);
  // The exact sampled ids and their log-probs are in the pool at the action span.
  std::vector<int32_t> sampled =
      Env::tokenizer->Encode("<think>answer</think><code>submit('Ana')</code>");
  const StepRecord& last = t.steps[1];
  ASSERT_EQ(last.action.size(), sampled.size());
  EXPECT_TRUE(
      std::equal(sampled.begin(), sampled.end(), t.tokens.begin() + last.action.begin));
  EXPECT_FLOAT_EQ(t.logprobs[last.action.begin + 2], -2.5f);
  EXPECT_EQ(t.logprobs[last.action.begin - 1], 0.0f);
  EXPECT_EQ(last.observation.size(), 0u) << "the last step has no observation";
  EXPECT_GT(t.steps[0].observation.size(), 0u);
  EXPECT_EQ(t.steps[0].policy_version, 3u);
  // Each step's context spans rebuild exactly what the policy was given.
  for (size_t k = 0; k < t.steps.size(); ++k) {
    EXPECT_EQ(Gather(t, t.steps[k].context), policy.contexts[1][k]) << "step " << k;
  }
  // The second context extends the first one's history and ends with the Notepad.
  auto text = Env::tokenizer->Decode(policy.contexts[1][1]);
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(*text, HasSubstr("ran: x = 1"));
  EXPECT_THAT(*text, HasSubstr("fact from the sandbox"));
  EXPECT_LT(text->find("ran: x = 1"), text->find("<notepad>"));
  EXPECT_EQ(sandbox.opened.load(), 1);
  EXPECT_EQ(sandbox.closed.load(), 1);
  EXPECT_EQ(policy.ended, std::vector<uint64_t>{1});
}

TEST(EpisodeRunnerTest, MalformedActionsAreNotExecutedAndEndTheEpisode) {
  FakeSandbox sandbox(Echo);
  ScriptPolicy policy({{1, {"I will just answer: Ana"}}});
  EpisodeRunner runner(Env::tokenizer.get(), Env::chat_template.get(), &policy,
                       &sandbox, Options());
  auto out = runner.Run({Task(1)});
  ASSERT_TRUE(out.ok()) << out.status();
  const TrajectoryRecord& t = (*out)[0];
  EXPECT_EQ(t.ending_reason, EndingReason::kFormatErrors);
  EXPECT_EQ(t.steps.size(), 3u);
  EXPECT_EQ(sandbox.executed.load(), 0);
  EXPECT_FALSE(t.steps[0].well_formed);
  EXPECT_THAT(t.steps[0].observation_text, HasSubstr("Not executed"));
  EXPECT_FALSE(t.steps[0].error.empty());  // the parser's reason
  EXPECT_THAT(t.steps[0].observation_text, HasSubstr(t.steps[0].error));
  EXPECT_EQ(t.total_reward, 0.0);
}

TEST(EpisodeRunnerTest, MaxStepsAndExecutionFailuresAreScored) {
  FakeSandbox sandbox(Echo);
  ScriptPolicy policy({{1,
                        {"<think>a</think><code>raise ValueError()</code>",
                         "<think>b</think><code>y = 2</code>"}}});
  EpisodeRunner runner(Env::tokenizer.get(), Env::chat_template.get(), &policy,
                       &sandbox, Options());
  auto out = runner.Run({Task(1)});
  ASSERT_TRUE(out.ok()) << out.status();
  const TrajectoryRecord& t = (*out)[0];
  EXPECT_EQ(t.ending_reason, EndingReason::kMaxSteps);
  ASSERT_EQ(t.steps.size(), 4u);
  EXPECT_FALSE(t.steps[0].executed_ok);
  EXPECT_TRUE(t.steps[1].executed_ok);
  EXPECT_THAT(t.steps[0].observation_text, HasSubstr("ValueError: boom"));
  EXPECT_EQ(t.steps[0].error, "ValueError: boom");
  EXPECT_EQ(t.steps[1].error, "");
  // format 0.1 (all four) + execution 0.1 * 3/4, no answer.
  EXPECT_NEAR(t.total_reward, 0.1 + 0.075, 1e-9);
}

TEST(EpisodeRunnerTest, BatchesThePolicyAndIsolatesSandboxFailures) {
  FakeSandbox sandbox([](const std::string& label, const std::string& code,
                         int cell) -> absl::StatusOr<CellResult> {
    if (label == "t2") return absl::UnavailableError("worker died");
    return Echo(label, code, cell);
  });
  std::string act = "<think>t</think><code>z = 3</code>";
  ScriptPolicy policy({{1, {act}},
                       {2, {act}},
                       {3, {act, act, "<think>t</think><code>submit('Ana')</code>"}}});
  EpisodeRunner runner(Env::tokenizer.get(), Env::chat_template.get(), &policy,
                       &sandbox, Options());
  auto out = runner.Run({Task(1), Task(2), Task(3)});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[1].ending_reason, EndingReason::kSandboxFailure);
  EXPECT_THAT((*out)[1].ending_detail, HasSubstr("worker died"));
  EXPECT_EQ((*out)[2].ending_reason, EndingReason::kSubmitted);
  EXPECT_EQ((*out)[0].ending_reason, EndingReason::kMaxSteps);
  EXPECT_EQ(policy.calls, 4) << "one batched call per step";
  EXPECT_EQ(policy.contexts[2].size(), 1u);
  EXPECT_EQ(sandbox.closed.load(), 3);
}

TEST(EpisodeRunnerTest, UnopenableSandboxEndsTheEpisodeBeforeItStarts) {
  FakeSandbox sandbox(Echo);
  sandbox.set_fail_open(true);
  ScriptPolicy policy({{1, {"<think>t</think><code>x</code>"}}});
  EpisodeRunner runner(Env::tokenizer.get(), Env::chat_template.get(), &policy,
                       &sandbox, Options());
  auto out = runner.Run({Task(1)});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].ending_reason, EndingReason::kSandboxFailure);
  EXPECT_TRUE((*out)[0].steps.empty());
  EXPECT_EQ(policy.calls, 0);
}

TEST(EpisodeRunnerTest, OldStepsAreDroppedButPromptTaskAndNotepadSurvive) {
  FakeSandbox sandbox([](const std::string&, const std::string& code,
                         int cell) -> absl::StatusOr<CellResult> {
    CellResult r;
    r.stdout_text = std::string(300, 'a' + cell % 26);
    r.notepad.facts = {absl::StrCat("kept fact ", cell)};
    (void)code;
    return r;
  });
  std::string act = "<think>t</think><code>print('x' * 300)</code>";
  ScriptPolicy policy({{1, {act}}});
  EpisodeOptions o = Options();
  o.max_steps = 6;
  o.context.max_action_tokens = 64;
  // Measure the fixed part, then allow room for about two steps of history.
  std::vector<int32_t> fixed = *Env::chat_template->Render(
      {{"system", o.system_prompt}, {"user", "Who founded X?"}}, false);
  o.context.context_tokens = static_cast<int>(fixed.size()) + 64 + 120 + 2 * 330;
  EpisodeRunner runner(Env::tokenizer.get(), Env::chat_template.get(), &policy,
                       &sandbox, o);
  auto out = runner.Run({Task(1)});
  ASSERT_TRUE(out.ok()) << out.status();
  const TrajectoryRecord& t = (*out)[0];
  EXPECT_GT(t.steps_trimmed, 0);
  const auto& last_ctx = policy.contexts[1].back();
  EXPECT_LE(static_cast<int>(last_ctx.size()) + o.context.max_action_tokens,
            o.context.context_tokens);
  auto text = Env::tokenizer->Decode(last_ctx);
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(*text, HasSubstr("Who founded X?"));
  EXPECT_THAT(*text, HasSubstr("kept fact 4"));
  EXPECT_THAT(*text, HasSubstr("were dropped from the context"));
  EXPECT_EQ(t.steps.back().context.front().begin, 0u)
      << "the prefix always comes first";
  for (size_t k = 0; k < t.steps.size(); ++k) {
    EXPECT_EQ(Gather(t, t.steps[k].context), policy.contexts[1][k]) << "step " << k;
  }
}

TEST(EpisodeRunnerTest, ContextTooSmallForThePromptEndsWithContextLimit) {
  FakeSandbox sandbox(Echo);
  ScriptPolicy policy({{1, {"<think>t</think><code>x</code>"}}});
  EpisodeOptions o = Options();
  o.context.context_tokens = 300;
  o.context.max_action_tokens = 200;
  EpisodeRunner runner(Env::tokenizer.get(), Env::chat_template.get(), &policy,
                       &sandbox, o);
  auto out = runner.Run({Task(1)});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].ending_reason, EndingReason::kContextLimit);
  EXPECT_THAT((*out)[0].ending_detail, HasSubstr("exceed"));
}

TEST(CellErrorLineTest, NamesWhatWentWrongInOneShortLine) {
  CellResult r;
  EXPECT_EQ(CellErrorLine(r), "");  // ran to the end
  r.has_error = true;
  r.error_name = "KeyError";
  r.error_message = "'id'\nmore lines of the message";
  EXPECT_EQ(CellErrorLine(r), "KeyError: 'id'");
  r.error_message = "";
  EXPECT_EQ(CellErrorLine(r), "KeyError");
  // Long messages are cut at a character boundary (each 'é' is two bytes).
  r.error_message =
      "ab" + std::string(105, 'x') + "\xc3\xa9\xc3\xa9\xc3\xa9" + std::string(50, 'y');
  std::string line = CellErrorLine(r);
  EXPECT_EQ(line, "KeyError: ab" + std::string(105, 'x') + "\xc3\xa9...");
  EXPECT_TRUE(absl::EndsWith(line, "...")) << line;
  EXPECT_TRUE(common::IsValidUtf8(line)) << line;
  r.end = CellEnd::kTimeout;
  EXPECT_EQ(CellErrorLine(r), "the cell timed out");
  r.end = CellEnd::kSessionKilled;
  r.kill_reason = "memory limit";
  EXPECT_EQ(CellErrorLine(r), "the session was killed: memory limit");
}

TEST(ObservationTest, RenderingShowsEveryPartAndCutsLongOutput) {
  CellResult r;
  r.stdout_text = std::string(5000, 'x');
  r.stderr_text = "warn";
  r.result = "42";
  r.end = CellEnd::kTimeout;
  std::string text = RenderObservation(r, 1000, absl::Seconds(10));
  EXPECT_THAT(text, HasSubstr("more characters cut"));
  EXPECT_THAT(text, HasSubstr("timed out after 10s"));
  EXPECT_LT(text.size(), 1200u);
  CellResult killed;
  killed.end = CellEnd::kSessionKilled;
  killed.kill_reason = "memory";
  killed.state_lost = true;
  EXPECT_THAT(RenderObservation(killed, 1000, absl::Seconds(1)),
              HasSubstr("stopped (memory)"));
  EXPECT_THAT(RenderObservation(CellResult{}, 1000, absl::Seconds(1)),
              HasSubstr("[no output]"));
}

}  // namespace
}  // namespace nbrl::agent
