// Who may talk to an nbrl server: TLS (optionally mutual) and a shared token
// (docs/security.md).
//
// A run's credentials are files named by the auth.* configuration keys: the token
// (auth.token_file), this process's certificate and key (auth.tls_cert,
// auth.tls_key) and the CA that signed its peers (auth.tls_ca). Servers serve TLS
// when they have a certificate and require (and verify) client certificates when
// they also have a CA; clients use TLS when they have a CA or a certificate. TLS
// does not apply to unix sockets (their file permissions guard them); the token
// does.
//
//   ASSIGN_OR_RETURN(auto auth, ServerAuth::Create(AuthOptionsFrom(config), address,
//                                                  "learner", registry));
//   builder.AddListeningPort(address, auth->Credentials(), &port);
//   ... and every handler starts with
//   if (grpc::Status s = Authenticate(auth, *context, "Status"); !s.ok()) return s;
//
//   ASSIGN_OR_RETURN(ClientAuth client, ClientAuth::Load(AuthOptionsFrom(config)));
//   auto channel = client.CreateChannel(address, args);
//   grpc::ClientContext ctx;
//   client.Apply(&ctx);  // before every call, streams included
//
// The token travels as call metadata ("authorization: Bearer <token>") on every
// call and is compared in constant time. Without TLS it crosses the network in
// clear text: use TLS whenever calls leave the machine.
//
// Thread safety: ClientAuth and ServerAuth are immutable after construction and
// safe to use from any thread.
#ifndef NBRL_COMMON_GRPC_AUTH_H_
#define NBRL_COMMON_GRPC_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
}  // namespace prometheus

namespace nbrl::common {

// The auth.* configuration keys. Empty strings mean "not configured".
struct AuthOptions {
  // File holding the run's shared token (surrounding whitespace ignored); empty:
  // calls carry no token and servers check none.
  std::string token_file;
  // This process's certificate (chain) and private key, PEM. A server needs both to
  // serve TLS; a client presents them for mutual TLS.
  std::string tls_cert;
  std::string tls_key;
  // CA bundle (PEM) that verifies the peer. On a server it makes client
  // certificates required (mutual TLS); on a client it verifies the server
  // (unset: the system's roots).
  std::string tls_ca;
  // Clients: the name the server's certificate must carry, instead of the host of
  // the address (for IP addresses without an IP SAN, and tests).
  std::string tls_server_name;
};

// Reads the auth.* keys.
AuthOptions AuthOptionsFrom(const Config& config);

// The files' contents, checked.
struct AuthMaterial {
  std::string token;
  std::string cert_pem;
  std::string key_pem;
  std::string ca_pem;
  std::string server_name;
};

// Reads and checks the files: each named file must be readable and non-empty,
// certificates and keys must be PEM, a key needs its certificate and vice versa,
// the token must be at least kMinTokenChars printable ASCII characters without
// spaces. InvalidArgument naming the key and the file otherwise. A key or token
// file that others may read is allowed, with a warning in the log.
absl::StatusOr<AuthMaterial> LoadAuthMaterial(const AuthOptions& options);
inline constexpr size_t kMinTokenChars = 16;

// Whether `address` is a unix socket ("unix:PATH" or "unix-abstract:NAME"), to
// which TLS does not apply.
bool IsUnixAddress(absl::string_view address);

// What a client presents. Cheap to copy (the material is shared).
class ClientAuth {
 public:
  // No TLS, no token.
  ClientAuth();
  static absl::StatusOr<ClientAuth> Load(const AuthOptions& options);
  explicit ClientAuth(AuthMaterial material);

  // A channel to `address`: TLS when a CA or a certificate is configured and the
  // address is not a unix socket, plaintext otherwise. `args` carries the
  // caller's settings (message sizes, keepalive).
  std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address,
                                               grpc::ChannelArguments args) const;
  // Adds the token to a call's metadata; call it on every ClientContext before
  // the call starts. Does nothing without a token.
  void Apply(grpc::ClientContext* context) const;

  bool has_token() const { return !material_->token.empty(); }
  bool tls() const {
    return !material_->ca_pem.empty() || !material_->cert_pem.empty();
  }

 private:
  std::shared_ptr<const AuthMaterial> material_;
};

// What a server requires, and the check of each call.
class ServerAuth {
 public:
  // Why calls were refused: the labels of nbrl_<component>_auth_failures_total.
  static constexpr const char* kMissingToken = "missing_token";
  static constexpr const char* kWrongToken = "wrong_token";
  static constexpr const char* kNoClientCertificate = "no_client_certificate";

  // For a server listening on `address`. InvalidArgument for unusable files (see
  // LoadAuthMaterial), or a TCP address with auth.tls_ca but no certificate to
  // serve TLS with. With a registry, exports
  // nbrl_<component>_auth_failures_total{reason}, every reason at 0 from the start.
  static absl::StatusOr<std::unique_ptr<ServerAuth>> Create(
      const AuthOptions& options, const std::string& address,
      const std::string& component, prometheus::Registry* registry);
  // As Create, from loaded material (tests).
  static absl::StatusOr<std::unique_ptr<ServerAuth>> Create(
      AuthMaterial material, const std::string& address, const std::string& component,
      prometheus::Registry* registry);

  // For AddListeningPort: TLS (requiring client certificates when a CA is
  // configured) on TCP with a certificate; plaintext otherwise.
  std::shared_ptr<grpc::ServerCredentials> Credentials() const;

  // OK when the call may proceed: it carries the run's token (when one is
  // configured) and, under mutual TLS, came with a verified client certificate.
  // Otherwise UNAUTHENTICATED with a message saying what is missing; the refusal
  // is counted and logged (rate-limited) with `method` and the peer.
  grpc::Status Check(const grpc::ServerContextBase& context,
                     absl::string_view method) const;

  bool tls() const { return tls_; }
  bool mutual_tls() const { return mutual_tls_; }
  bool has_token() const { return !material_.token.empty(); }
  // "TLS with client certificates + token", for start-up logs.
  std::string Describe() const;

 private:
  ServerAuth(AuthMaterial material, bool tls, bool mutual_tls);
  grpc::Status Refuse(const char* reason, const std::string& message,
                      const grpc::ServerContextBase& context,
                      absl::string_view method) const;

  // Constant after construction.
  const AuthMaterial material_;
  const bool tls_;
  const bool mutual_tls_;
  std::string expected_header_;  // "Bearer <token>"
  prometheus::Family<prometheus::Counter>* failures_ = nullptr;
  // Calls refused so far (for the log).
  mutable std::atomic<uint64_t> refused_{0};
};

// `auth` may be null (no checks: tests and in-process channels): OK then.
inline grpc::Status Authenticate(const ServerAuth* auth,
                                 const grpc::ServerContextBase& context,
                                 absl::string_view method) {
  return auth == nullptr ? grpc::Status::OK : auth->Check(context, method);
}

// Equality of a secret and a candidate in time that depends on the candidate's
// length only, never on where they differ.
bool ConstantTimeEquals(absl::string_view secret, absl::string_view candidate);

// Checks that a process serving on `address` can do so with `options` (the same
// checks as ServerAuth::Create, without building anything). For start-up
// validation.
absl::Status ValidateServerAuth(const AuthOptions& options, const std::string& address);

}  // namespace nbrl::common

#endif  // NBRL_COMMON_GRPC_AUTH_H_
