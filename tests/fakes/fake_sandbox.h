// An in-memory twin of a sandbox for agent tests: each session answers a cell with
// a function of (code, cell index) instead of running Python. Counts what happens.
// The episode runner's set-up cell that defines `question` always succeeds.
#ifndef NBRL_TESTS_FAKES_FAKE_SANDBOX_H_
#define NBRL_TESTS_FAKES_FAKE_SANDBOX_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "agent/sandbox_client.h"

namespace nbrl::testutil {

class FakeSandbox : public agent::SandboxClient {
 public:
  // (label, code, cell index in the session) -> result, or an error status for a
  // failing sandbox.
  using CellFn = std::function<absl::StatusOr<agent::CellResult>(
      const std::string& label, const std::string& code, int cell)>;

  explicit FakeSandbox(CellFn fn) : fn_(std::move(fn)) {}

  absl::StatusOr<std::unique_ptr<agent::SandboxSession>> OpenSession(
      const agent::SessionOptions& options) override {
    if (fail_open_) return absl::UnavailableError("fake sandbox refuses sessions");
    opened++;
    return std::unique_ptr<agent::SandboxSession>(new Session(this, options.label));
  }

  void set_fail_open(bool fail) { fail_open_ = fail; }

  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  std::atomic<int> executed{0};  // the agent's cells
  std::atomic<int> setups{0};    // set-up cells defining `question`

 private:
  class Session : public agent::SandboxSession {
   public:
    Session(FakeSandbox* owner, std::string label)
        : owner_(owner), label_(std::move(label)) {}
    ~Session() override { (void)Close(); }
    absl::StatusOr<agent::CellResult> Execute(const std::string& code,
                                              absl::Duration timeout) override {
      (void)timeout;
      // The episode runner's set-up cell (`question = "..."`) succeeds without
      // reaching the cell function, so tests see only the agent's cells.
      if (!setup_done_ && code.rfind("question = ", 0) == 0) {
        setup_done_ = true;
        owner_->setups++;
        return agent::CellResult{};
      }
      owner_->executed++;
      return owner_->fn_(label_, code, cells_++);
    }
    absl::Status Close() override {
      if (!closed_) {
        closed_ = true;
        owner_->closed++;
      }
      return absl::OkStatus();
    }

   private:
    FakeSandbox* owner_;
    std::string label_;
    int cells_ = 0;
    bool closed_ = false;
    bool setup_done_ = false;
  };

  CellFn fn_;
  bool fail_open_ = false;
};

}  // namespace nbrl::testutil

#endif  // NBRL_TESTS_FAKES_FAKE_SANDBOX_H_
