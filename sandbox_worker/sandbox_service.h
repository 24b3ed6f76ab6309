// The gRPC adapter: nbrl.v1.SandboxService over a SessionManager. It converts
// messages to and from our types and does nothing else, after authenticating
// every call (`auth`: the run's token and, under mutual TLS, a client
// certificate; UNAUTHENTICATED otherwise, before any session is touched). Fields
// are validated by the manager (and durations here): INVALID_ARGUMENT for a
// malformed request, NOT_FOUND for an unknown session, RESOURCE_EXHAUSTED for a
// message over MaxMessageBytes.
//
// Thread safety: thread-safe (the manager is). Handlers block for the length of a
// cell on gRPC's synchronous thread pool.
#ifndef NBRL_SANDBOX_WORKER_SANDBOX_SERVICE_H_
#define NBRL_SANDBOX_WORKER_SANDBOX_SERVICE_H_

#include <grpcpp/server_builder.h>

#include <atomic>

#include "common/grpc_auth.h"
#include "nbrl/v1/sandbox.grpc.pb.h"
#include "sandbox_worker/session_manager.h"

namespace nbrl::sandbox {

class SandboxServiceImpl final : public nbrl::v1::SandboxService::Service {
 public:
  // `manager` and `auth` must outlive the service; a null `auth` checks nothing
  // (tests, in-process channels).
  explicit SandboxServiceImpl(SessionManager* manager,
                              const common::ServerAuth* auth = nullptr)
      : manager_(manager), auth_(auth) {}

  // Registers the service with `builder` and caps the server's messages at
  // MaxMessageBytes(manager options). Use it rather than RegisterService.
  void AddTo(grpc::ServerBuilder* builder);

  grpc::Status OpenSession(grpc::ServerContext* ctx,
                           const nbrl::v1::OpenSessionRequest* req,
                           nbrl::v1::OpenSessionResponse* resp) override;
  grpc::Status Execute(grpc::ServerContext* ctx, const nbrl::v1::ExecuteRequest* req,
                       nbrl::v1::ExecuteResponse* resp) override;
  grpc::Status CloseSession(grpc::ServerContext* ctx,
                            const nbrl::v1::CloseSessionRequest* req,
                            nbrl::v1::CloseSessionResponse* resp) override;
  grpc::Status Health(grpc::ServerContext* ctx, const nbrl::v1::HealthRequest* req,
                      nbrl::v1::HealthResponse* resp) override;
  // Holds the stream until the client goes away (or Shutdown), then closes the
  // client's sessions. Uses one gRPC thread per attached client.
  grpc::Status Attach(grpc::ServerContext* ctx, const nbrl::v1::AttachRequest* req,
                      grpc::ServerWriter<nbrl::v1::AttachEvent>* writer) override;
  // Ends every Attach stream (at shutdown) without closing the clients' sessions.
  void Shutdown();

 private:
  SessionManager* const manager_;
  const common::ServerAuth* const auth_;
  std::atomic<bool> shutting_down_{false};
};

// The largest request the server accepts, in bytes: a cell of max_code_bytes plus
// room for the other fields. Larger requests fail with RESOURCE_EXHAUSTED before
// they are parsed; a cell up to the cap but over max_code_bytes gets
// INVALID_ARGUMENT.
int MaxMessageBytes(const SessionManagerOptions& options);

// CellResult -> ExecuteResponse.
void ToProto(const CellResult& r, nbrl::v1::ExecuteResponse* out);

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_SANDBOX_SERVICE_H_
