// SandboxService over an in-process channel, against a real SessionManager:
// the happy path, input validation, unknown sessions, capacity, draining and
// metrics.
#include "sandbox_worker/sandbox_service.h"

#include <grpcpp/grpcpp.h>

#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nbrl::sandbox {
namespace {

using ::testing::HasSubstr;

class SandboxServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = std::make_shared<prometheus::Registry>();
    metrics_ = std::make_unique<SandboxMetrics>(*registry_);
    SessionManagerOptions o;
    o.warm_sessions = 2;
    o.max_sessions = 3;
    o.max_cell_timeout = absl::Seconds(2);
    o.max_code_bytes = 1000;
    o.idle_timeout = absl::Seconds(30);
    auto m = SessionManager::Create(o, nullptr, metrics_.get());
    ASSERT_TRUE(m.ok()) << m.status();
    manager_ = *std::move(m);
    service_ = std::make_unique<SandboxServiceImpl>(manager_.get());
    grpc::ServerBuilder b;
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    stub_ = nbrl::v1::SandboxService::NewStub(
        server_->InProcessChannel(grpc::ChannelArguments()));
  }
  void TearDown() override {
    service_->Shutdown();
    server_->Shutdown();
  }

  std::string Open(grpc::Status* status = nullptr,
                   const std::string& client = "actor-0") {
    grpc::ClientContext ctx;
    nbrl::v1::OpenSessionRequest req;
    req.set_client_id(client);
    nbrl::v1::OpenSessionResponse resp;
    grpc::Status st = stub_->OpenSession(&ctx, req, &resp);
    if (status != nullptr) *status = st;
    return resp.session_id();
  }

  grpc::Status Execute(const std::string& id, const std::string& code,
                       nbrl::v1::ExecuteResponse* resp, int timeout_ms = 0) {
    grpc::ClientContext ctx;
    nbrl::v1::ExecuteRequest req;
    req.set_session_id(id);
    req.set_code(code);
    if (timeout_ms > 0) {
      req.mutable_timeout()->set_seconds(timeout_ms / 1000);
      req.mutable_timeout()->set_nanos((timeout_ms % 1000) * 1000000);
    }
    return stub_->Execute(&ctx, req, resp);
  }

  bool Close(const std::string& id) {
    grpc::ClientContext ctx;
    nbrl::v1::CloseSessionRequest req;
    req.set_session_id(id);
    nbrl::v1::CloseSessionResponse resp;
    EXPECT_TRUE(stub_->CloseSession(&ctx, req, &resp).ok());
    return resp.existed();
  }

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<SandboxMetrics> metrics_;
  std::unique_ptr<SessionManager> manager_;
  std::unique_ptr<SandboxServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<nbrl::v1::SandboxService::Stub> stub_;
};

TEST_F(SandboxServiceTest, OpenExecuteCloseRoundTrip) {
  grpc::Status st;
  std::string id = Open(&st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  nbrl::v1::ExecuteResponse r;
  ASSERT_TRUE(
      Execute(id, "n = 20\nprint('hi')\nnotepad.add_todo('x')\nn * 2", &r).ok());
  EXPECT_EQ(r.stdout(), "hi\n");
  EXPECT_EQ(r.result(), "40");
  EXPECT_EQ(r.termination(), nbrl::v1::CELL_TERMINATION_COMPLETED);
  ASSERT_EQ(r.notepad().todos_size(), 1);
  EXPECT_EQ(r.notepad().todos(0).status(), nbrl::v1::TODO_STATUS_PENDING);
  ASSERT_EQ(r.variables_size(), 1);
  EXPECT_EQ(r.variables(0).name(), "n");
  nbrl::v1::ExecuteResponse f;
  ASSERT_TRUE(Execute(id, "submit_final_answer(n)", &f).ok());
  EXPECT_TRUE(f.has_final_answer());
  EXPECT_EQ(f.final_answer(), "20");
  EXPECT_TRUE(Close(id));
  EXPECT_FALSE(Close(id));  // idempotent
  nbrl::v1::ExecuteResponse after;
  EXPECT_EQ(Execute(id, "1", &after).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SandboxServiceTest, TimeoutIsReportedAndClampedToMaximum) {
  std::string id = Open();
  nbrl::v1::ExecuteResponse r;
  // Asks for an hour; the worker's maximum (2 s) applies.
  ASSERT_TRUE(Execute(id, "while True: pass", &r, 3600 * 1000).ok());
  EXPECT_EQ(r.termination(), nbrl::v1::CELL_TERMINATION_TIMEOUT);
  EXPECT_EQ(r.error().name(), "KeyboardInterrupt");
}

TEST_F(SandboxServiceTest, BadRequestsGetClearStatuses) {
  nbrl::v1::ExecuteResponse r;
  EXPECT_EQ(Execute("", "1", &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Execute("no-such-session", "1", &r).error_code(),
            grpc::StatusCode::NOT_FOUND);
  std::string id = Open();
  grpc::Status big = Execute(id, std::string(5000, '#'), &r);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(big.error_message(), HasSubstr("limit is 1000"));
  {
    grpc::ClientContext ctx;
    nbrl::v1::ExecuteRequest req;
    req.set_session_id(id);
    req.set_code("1");
    req.mutable_timeout()->set_seconds(-5);
    EXPECT_EQ(stub_->Execute(&ctx, req, &r).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    nbrl::v1::OpenSessionRequest req;
    req.add_tools("web_search");  // this worker serves no tools
    nbrl::v1::OpenSessionResponse resp;
    grpc::Status st = stub_->OpenSession(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(st.error_message(), HasSubstr("web_search"));
  }
  // The session still works after all that.
  ASSERT_TRUE(Execute(id, "2 + 2", &r).ok());
  EXPECT_EQ(r.result(), "4");
}

TEST_F(SandboxServiceTest, CapacityAndDrainingAreEnforced) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Open());
  grpc::Status full;
  Open(&full);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  {
    grpc::ClientContext ctx;
    nbrl::v1::HealthResponse h;
    ASSERT_TRUE(stub_->Health(&ctx, nbrl::v1::HealthRequest(), &h).ok());
    EXPECT_EQ(h.status(), nbrl::v1::HealthResponse::SERVING_STATUS_SERVING);
    EXPECT_EQ(h.sessions_active(), 3u);
    EXPECT_EQ(h.sessions_capacity(), 3u);
  }
  EXPECT_TRUE(Close(ids[0]));
  manager_->Drain();
  grpc::Status draining;
  Open(&draining);
  EXPECT_EQ(draining.error_code(), grpc::StatusCode::UNAVAILABLE);
  grpc::ClientContext ctx;
  nbrl::v1::HealthResponse h;
  ASSERT_TRUE(stub_->Health(&ctx, nbrl::v1::HealthRequest(), &h).ok());
  EXPECT_EQ(h.status(), nbrl::v1::HealthResponse::SERVING_STATUS_DRAINING);
  nbrl::v1::ExecuteResponse r;
  ASSERT_TRUE(Execute(ids[1], "'open sessions keep working'", &r).ok());
}

TEST_F(SandboxServiceTest, IdleSessionsAreReaped) {
  grpc::ClientContext ctx;
  nbrl::v1::OpenSessionRequest req;
  req.mutable_idle_timeout()->set_nanos(200 * 1000 * 1000);
  nbrl::v1::OpenSessionResponse resp;
  ASSERT_TRUE(stub_->OpenSession(&ctx, req, &resp).ok());
  for (int i = 0; i < 100 && manager_->stats().active > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(manager_->stats().active, 0);
  nbrl::v1::ExecuteResponse r;
  EXPECT_EQ(Execute(resp.session_id(), "1", &r).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(SandboxServiceTest, KillsAndTimeoutsAreCounted) {
  std::string id = Open();
  nbrl::v1::ExecuteResponse r;
  ASSERT_TRUE(Execute(id, "import os\nos._exit(1)", &r).ok());
  EXPECT_EQ(r.termination(), nbrl::v1::CELL_TERMINATION_SESSION_KILLED);
  EXPECT_EQ(r.kill_reason(), "exited");
  EXPECT_TRUE(r.state_lost());
  ASSERT_TRUE(Execute(id, "1", &r).ok());
  EXPECT_TRUE(r.state_lost());
  ASSERT_TRUE(Execute(id, "while True: pass", &r, 200).ok());
  EXPECT_EQ(metrics_->limit_kills.Add({{"kind", "exited"}}).Value(), 1);
  EXPECT_EQ(metrics_->cell_timeouts.Value(), 1);
  // Two sandboxes were taken from the pool (the session's first and its restart),
  // and the pool refills to 2 in the background: wait for it before counting.
  for (int i = 0; i < 200 && manager_->stats().warm < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(manager_->stats().warm, 2);
  EXPECT_EQ(metrics_->sessions_started.Value(), 4);
}

TEST_F(SandboxServiceTest, SessionsOfAClientThatGoesAwayAreClosed) {
  grpc::ClientContext attach_ctx;
  nbrl::v1::AttachRequest attach;
  attach.set_client_id("actor-0");
  auto reader = stub_->Attach(&attach_ctx, attach);
  std::thread drain([&] {
    nbrl::v1::AttachEvent ev;
    while (reader->Read(&ev)) {
    }
  });
  std::string mine = Open();
  std::string theirs = Open(nullptr, "actor-1");
  ASSERT_FALSE(mine.empty());
  ASSERT_FALSE(theirs.empty());
  nbrl::v1::ExecuteResponse resp;
  ASSERT_TRUE(Execute(mine, "x = 1", &resp).ok());
  // The client disappears: its stream is cancelled.
  attach_ctx.TryCancel();
  drain.join();
  (void)reader->Finish();
  grpc::Status st;
  for (int i = 0; i < 100; ++i) {
    st = Execute(mine, "x", &resp);
    if (st.error_code() == grpc::StatusCode::NOT_FOUND) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  EXPECT_TRUE(Execute(theirs, "print(2)", &resp).ok())
      << "another client's session stays";
  grpc::ClientContext bad_ctx;
  auto bad = stub_->Attach(&bad_ctx, nbrl::v1::AttachRequest());
  nbrl::v1::AttachEvent ev;
  EXPECT_FALSE(bad->Read(&ev));
  EXPECT_EQ(bad->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace nbrl::sandbox
