// agent::SandboxClient over gRPC: talks to an nbrl-sandbox worker
// (nbrl.v1.SandboxService) on a unix socket ("unix:/path") or TCP ("host:port").
//
// A cell's call deadline is its timeout plus `rpc_margin`, so a hung worker is
// reported (DeadlineExceeded) instead of hanging the episode. Closing a session
// is best effort: the worker also reaps idle sessions.
//
// With a client_id the client also holds an Attach stream open (re-attaching after
// a worker restart), so if this process dies the worker closes its sessions at once
// instead of at their idle timeout.
//
// Every call carries options.auth's token; on TCP the channel uses its TLS
// material (a unix socket never uses TLS).
//
// Thread-safe: sessions of one client may be used from different threads, each
// session by one thread at a time.
#ifndef NBRL_ACTOR_GRPC_SANDBOX_CLIENT_H_
#define NBRL_ACTOR_GRPC_SANDBOX_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "agent/sandbox_client.h"
#include "common/grpc_auth.h"
#include "nbrl/v1/sandbox.grpc.pb.h"

namespace nbrl::actor {

struct GrpcSandboxOptions {
  std::string address;
  // Added to each cell's timeout for the call's deadline.
  absl::Duration rpc_margin = absl::Seconds(15);
  // Deadline of OpenSession and CloseSession.
  absl::Duration open_timeout = absl::Seconds(30);
  // Client id sent with OpenSession and Attach (the actor id); empty: no Attach.
  std::string client_id;
  // Token (and, on TCP, TLS material) presented to the worker (default: none).
  common::ClientAuth auth;
};

class GrpcSandboxClient : public agent::SandboxClient {
 public:
  // InvalidArgument for an empty address.
  static absl::StatusOr<std::unique_ptr<GrpcSandboxClient>> Create(
      GrpcSandboxOptions options);

  absl::StatusOr<std::unique_ptr<agent::SandboxSession>> OpenSession(
      const agent::SessionOptions& options) override;

  // Health of the worker (for start-up waits).
  absl::StatusOr<v1::HealthResponse> Health(absl::Duration timeout);

  // Ends the Attach stream and joins its thread.
  ~GrpcSandboxClient() override;

 private:
  explicit GrpcSandboxClient(GrpcSandboxOptions options);
  void AttachLoop();

  absl::Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* attach_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread attach_thread_;

  const GrpcSandboxOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<v1::SandboxService::Stub> stub_;
};

// nbrl.v1.ExecuteResponse -> agent::CellResult.
agent::CellResult FromProto(const v1::ExecuteResponse& r);

}  // namespace nbrl::actor

#endif  // NBRL_ACTOR_GRPC_SANDBOX_CLIENT_H_
