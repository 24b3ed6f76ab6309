#include "sandbox_worker/session_manager.h"

#include <algorithm>
#include <atomic>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/utf8.h"
#include "glog/logging.h"

namespace nbrl::sandbox {
namespace {

// How often idle sessions are looked for, and the pause after a failed start.
constexpr absl::Duration kReapInterval = absl::Milliseconds(500);
constexpr absl::Duration kStartBackoff = absl::Seconds(1);

// InvalidArgument naming `field` when `value` is not well-formed UTF-8. Text
// fields are proto `bytes` (sandbox.proto says why), so this is where invalid
// UTF-8 is refused.
absl::Status CheckUtf8(absl::string_view field, absl::string_view value) {
  const size_t bad = common::FirstInvalidUtf8(value);
  if (bad == absl::string_view::npos) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " '", absl::CHexEscape(value.substr(0, 64)),
                   value.size() > 64 ? "..." : "", "' is not valid UTF-8 (byte ", bad,
                   " of ", value.size(), ")"));
}

// InvalidArgument naming `field` when `value` is longer than `max_bytes` or not
// UTF-8.
absl::Status CheckLength(absl::string_view field, absl::string_view value,
                         size_t max_bytes) {
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " '", absl::CHexEscape(value.substr(0, 64)), "...' has ",
                     value.size(), " bytes, at most ", max_bytes));
  }
  return CheckUtf8(field, value);
}

// Also InvalidArgument when `value` holds a control character (ids go into logs
// and error messages, one line each).
absl::Status CheckText(absl::string_view field, absl::string_view value,
                       size_t max_bytes) {
  if (absl::Status st = CheckLength(field, value, max_bytes); !st.ok()) return st;
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " '", absl::CHexEscape(value), "' contains a control character"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOpenRequest(const OpenRequest& request) {
  if (absl::Status st =
          CheckText("client_id", request.client_id, SessionManager::kMaxIdBytes);
      !st.ok()) {
    return st;
  }
  if (absl::Status st =
          CheckLength("label", request.label, SessionManager::kMaxLabelBytes);
      !st.ok()) {
    return st;
  }
  if (request.tools.size() > SessionManager::kMaxTools) {
    return absl::InvalidArgumentError(
        absl::StrCat("a session asks for ", request.tools.size(), " tools, at most ",
                     SessionManager::kMaxTools));
  }
  for (const std::string& t : request.tools) {
    if (absl::Status st = CheckText("tool name", t, SessionManager::kMaxIdBytes);
        !st.ok()) {
      return st;
    }
  }
  if (request.no_tools && !request.tools.empty()) {
    return absl::InvalidArgumentError("no_tools is set but tools are listed");
  }
  if (request.idle_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("idle_timeout must not be negative");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SessionManager::CheckSessionId(const std::string& session_id) {
  if (session_id.empty()) return absl::InvalidArgumentError("session_id is empty");
  return CheckText("session_id", session_id, kMaxIdBytes);
}

absl::Status SessionManager::CheckClientId(const std::string& client_id) {
  if (client_id.empty()) return absl::InvalidArgumentError("client_id is empty");
  return CheckText("client_id", client_id, kMaxIdBytes);
}

struct SessionManager::Managed {
  absl::Mutex mu;  // held while a cell runs
  std::unique_ptr<Session> session ABSL_GUARDED_BY(mu);
  bool state_lost_pending ABSL_GUARDED_BY(mu) = false;
  std::unique_ptr<ToolBridge> bridge;  // used under mu
  std::string client_id;
  std::string label;
  absl::Duration idle_timeout;
  std::atomic<int64_t> last_used_ns{0};
  std::atomic<bool> busy{false};
};

SessionManager::SessionManager(const SessionManagerOptions& options,
                               std::unique_ptr<Launcher> launcher, ToolBackend* tools,
                               SandboxMetrics* metrics)
    : options_(options),
      launcher_(std::move(launcher)),
      tools_(tools),
      metrics_(metrics) {
  if (tools_ != nullptr) served_tools_ = tools_->tools();
  if (metrics_ != nullptr) metrics_->AddTools(served_tools_);
}

absl::StatusOr<std::unique_ptr<SessionManager>> SessionManager::Create(
    const SessionManagerOptions& options, ToolBackend* tools, SandboxMetrics* metrics) {
  if (options.warm_sessions < 0 || options.max_sessions < 1) {
    return absl::InvalidArgumentError(
        "sandbox: warm_sessions must be >= 0 and max_sessions >= 1");
  }
  absl::StatusOr<std::unique_ptr<Launcher>> launcher =
      Launcher::Create(options.launcher);
  if (!launcher.ok()) return launcher.status();
  std::unique_ptr<SessionManager> m(
      new SessionManager(options, *std::move(launcher), tools, metrics));
  m->maintenance_ = std::thread([p = m.get()] { p->MaintenanceLoop(); });
  return m;
}

SessionManager::~SessionManager() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  maintenance_.join();
  std::map<std::string, std::shared_ptr<Managed>> sessions;
  std::deque<std::unique_ptr<SandboxProcess>> warm;
  {
    absl::MutexLock lock(&mu_);
    sessions.swap(sessions_);
    warm.swap(warm_);
  }
  // Destroying them kills and reaps every sandbox.
}

void SessionManager::UpdateGauges() {
  if (metrics_ == nullptr) return;
  metrics_->sessions_active.Set(static_cast<double>(sessions_.size()));
  metrics_->sessions_warm.Set(static_cast<double>(warm_.size()));
}

void SessionManager::MaintenanceLoop() {
  absl::Time next_reap = absl::Now() + kReapInterval;
  absl::Time no_start_before = absl::InfinitePast();
  while (true) {
    bool spawn = false;
    {
      absl::MutexLock lock(&mu_);
      auto wanted = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return static_cast<int>(warm_.size()) < options_.warm_sessions + waiting_;
      };
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || (wanted() && absl::Now() >= no_start_before);
      };
      // Wake for the next reap, or when a start backoff ends.
      absl::Time wake = next_reap;
      if (no_start_before > absl::Now()) wake = std::min(wake, no_start_before);
      mu_.AwaitWithDeadline(absl::Condition(&ready), wake);
      if (stopping_) return;
      spawn = wanted() && absl::Now() >= no_start_before;
    }
    if (spawn) {
      absl::StatusOr<std::unique_ptr<SandboxProcess>> p =
          launcher_->Launch(absl::Now() + options_.start_timeout);
      absl::MutexLock lock(&mu_);
      if (p.ok()) {
        warm_.push_back(*std::move(p));
        start_error_ = absl::OkStatus();
        if (metrics_ != nullptr) metrics_->sessions_started.Increment();
      } else {
        if (start_error_.ok()) LOG(ERROR) << "sandbox: " << p.status();
        start_error_ = p.status();
        no_start_before = absl::Now() + kStartBackoff;
        if (metrics_ != nullptr) metrics_->start_failures.Increment();
      }
      UpdateGauges();
    }
    if (absl::Now() >= next_reap) {
      ReapIdle();
      next_reap = absl::Now() + kReapInterval;
    }
  }
}

void SessionManager::ReapIdle() {
  // Declared before the lock: the reaped sandboxes are killed after it is released.
  std::vector<std::shared_ptr<Managed>> reaped;
  int64_t now = absl::ToUnixNanos(absl::Now());
  absl::MutexLock lock(&mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    const Managed& m = *it->second;
    if (!m.busy && now - m.last_used_ns > absl::ToInt64Nanoseconds(m.idle_timeout)) {
      LOG(INFO) << "sandbox: closing idle session " << it->first << " of client '"
                << m.client_id << "' (" << m.label << ")";
      reaped.push_back(std::move(it->second));
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
  UpdateGauges();
}

absl::StatusOr<std::unique_ptr<SandboxProcess>> SessionManager::TakeSandbox() {
  absl::MutexLock lock(&mu_);
  ++waiting_;
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !warm_.empty() || stopping_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), options_.start_timeout);
  --waiting_;
  if (stopping_) return absl::CancelledError("sandbox worker is shutting down");
  if (warm_.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "sandbox: no session could be started within ",
        absl::FormatDuration(options_.start_timeout),
        start_error_.ok() ? "" : absl::StrCat(": ", start_error_.message())));
  }
  std::unique_ptr<SandboxProcess> p = std::move(warm_.front());
  warm_.pop_front();
  UpdateGauges();
  return p;
}

absl::StatusOr<std::string> SessionManager::Open(const OpenRequest& request) {
  absl::Time start = absl::Now();
  if (absl::Status st = CheckOpenRequest(request); !st.ok()) return st;
  {
    absl::MutexLock lock(&mu_);
    if (draining_ || stopping_) {
      return absl::UnavailableError(
          "sandbox worker is draining; open the session elsewhere");
    }
    if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sandbox worker is at capacity (", options_.max_sessions, " sessions)"));
    }
  }
  std::vector<std::string> tools = request.tools;
  if (tools.empty() && !request.no_tools) {
    for (const std::string& t : options_.default_tools) {
      if (std::count(served_tools_.begin(), served_tools_.end(), t)) tools.push_back(t);
    }
  }
  for (const std::string& t : tools) {
    if (!std::count(served_tools_.begin(), served_tools_.end(), t)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tool '", t, "' is not served by this worker (served: ",
          served_tools_.empty() ? "none" : absl::StrJoin(served_tools_, ", "), ")"));
    }
  }
  auto m = std::make_shared<Managed>();
  m->client_id = request.client_id;
  m->label = request.label;
  m->idle_timeout = request.idle_timeout == absl::ZeroDuration()
                        ? options_.idle_timeout
                        : std::min(request.idle_timeout, options_.max_idle_timeout);
  m->bridge = std::make_unique<ToolBridge>(
      tools_, options_.tools, std::set<std::string>(tools.begin(), tools.end()),
      metrics_);
  m->last_used_ns = absl::ToUnixNanos(absl::Now());
  absl::StatusOr<std::unique_ptr<SandboxProcess>> p = TakeSandbox();
  if (!p.ok()) return p.status();
  {
    absl::MutexLock session_lock(&m->mu);
    m->session = std::make_unique<Session>(*std::move(p), options_.session);
  }
  std::string id;
  {
    absl::MutexLock lock(&mu_);
    if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sandbox worker is at capacity (", options_.max_sessions, " sessions)"));
    }
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    id = absl::StrFormat("s%d-%08x", next_id_++, static_cast<uint32_t>(rng()));
    sessions_[id] = m;
    UpdateGauges();
  }
  if (metrics_ != nullptr) {
    metrics_->open_latency.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  }
  VLOG(1) << "sandbox: opened " << id << " for '" << request.client_id << "' ("
          << request.label << ")";
  return id;
}

absl::StatusOr<CellResult> SessionManager::Execute(const std::string& session_id,
                                                   CellRequest request) {
  absl::Time start = absl::Now();
  if (absl::Status st = CheckSessionId(session_id); !st.ok()) return st;
  if (request.code.size() > options_.max_code_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("cell of ", request.code.size(),
                                                   " bytes; the limit is ",
                                                   options_.max_code_bytes));
  }
  if (absl::Status st = CheckUtf8("code", request.code); !st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(st.message(),
                     "; a cell is UTF-8 text (nbrl's actor replaces "
                     "invalid bytes with U+FFFD before sending)"));
  }
  if (request.timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("cell timeout must not be negative");
  }
  if (request.timeout == absl::ZeroDuration()) request.timeout = options_.cell_timeout;
  request.timeout = std::min(request.timeout, options_.max_cell_timeout);
  if (request.max_output_bytes == 0) request.max_output_bytes = options_.output_bytes;
  request.max_output_bytes =
      std::min(request.max_output_bytes, options_.max_output_bytes);

  std::shared_ptr<Managed> m;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) {
      return absl::NotFoundError(absl::StrCat("no open session '", session_id, "'"));
    }
    m = it->second;
  }
  if (!m->mu.TryLock()) {
    return absl::FailedPreconditionError(
        absl::StrCat("session ", session_id, " is running another cell"));
  }
  m->busy = true;
  absl::Status st;
  CellResult result;
  if (m->session == nullptr || !m->session->alive()) {
    absl::StatusOr<std::unique_ptr<SandboxProcess>> p = TakeSandbox();
    if (p.ok()) {
      m->session = std::make_unique<Session>(*std::move(p), options_.session);
    } else {
      st = p.status();
    }
  }
  if (st.ok()) {
    result = m->session->Run(request, m->bridge.get());
    if (m->state_lost_pending) result.state_lost = true;
    m->state_lost_pending = result.termination == Termination::kSessionKilled;
    if (m->state_lost_pending) {
      m->session.reset();
      LOG(WARNING) << "sandbox: session " << session_id << " killed ("
                   << result.kill_reason
                   << "); its next cell starts in a fresh sandbox";
    }
  }
  m->last_used_ns = absl::ToUnixNanos(absl::Now());
  m->busy = false;
  m->mu.Unlock();
  if (!st.ok()) return st;
  if (metrics_ != nullptr) {
    metrics_->execute_latency.Observe(absl::ToDoubleSeconds(absl::Now() - start));
    if (result.termination == Termination::kSessionKilled) {
      metrics_->RecordKill(result.kill_reason);
    }
    if (result.termination == Termination::kTimeout ||
        result.kill_reason == "timeout") {
      metrics_->cell_timeouts.Increment();
    }
  }
  return result;
}

bool SessionManager::Close(const std::string& session_id) {
  std::shared_ptr<Managed> m;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return false;
    m = std::move(it->second);
    sessions_.erase(it);
    UpdateGauges();
  }
  VLOG(1) << "sandbox: closed " << session_id;
  return true;  // `m` dies here (or after a running cell): the sandbox is killed
}

int SessionManager::CloseClient(const std::string& client_id) {
  std::vector<std::shared_ptr<Managed>> closed;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second->client_id == client_id) {
        closed.push_back(std::move(it->second));
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
    UpdateGauges();
  }
  if (!closed.empty()) {
    LOG(INFO) << "sandbox: client '" << client_id << "' went away; closed "
              << closed.size() << " session(s)";
  }
  return static_cast<int>(closed.size());  // the sandboxes die with `closed`
}

void SessionManager::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool SessionManager::WaitForWarm(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(warm_.size()) >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
}

SessionManager::Stats SessionManager::stats() {
  absl::MutexLock lock(&mu_);
  return Stats{static_cast<int>(sessions_.size()), static_cast<int>(warm_.size()),
               options_.max_sessions, draining_};
}

}  // namespace nbrl::sandbox
