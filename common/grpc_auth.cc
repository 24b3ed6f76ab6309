#include "common/grpc_auth.h"

#include <sys/stat.h>

#include <atomic>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/metrics.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace nbrl::common {
namespace {

constexpr char kAuthorizationHeader[] = "authorization";
constexpr char kBearer[] = "Bearer ";

// Reads the file named by config key `key`; InvalidArgument naming both when it
// cannot be read or is empty.
absl::StatusOr<std::string> ReadAuthFile(const char* key, const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": cannot read ", path, ": ", text.status().message()));
  }
  if (absl::StripAsciiWhitespace(*text).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": ", path, " is empty"));
  }
  return text;
}

// A secret readable by others still works, but deserves a word in the log.
void WarnIfShared(const char* key, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    LOG(WARNING) << key << ": " << path << " may be read by other users (mode "
                 << std::oct << (st.st_mode & 0777) << std::dec << "); chmod 600 it";
  }
}

absl::Status CheckPem(const char* key, const std::string& path, const std::string& text,
                      bool private_key) {
  if (private_key) {
    if (absl::StrContains(text, "ENCRYPTED PRIVATE KEY")) {
      return absl::InvalidArgumentError(absl::StrCat(
          key, ": ", path, " is an encrypted key; gRPC needs it unencrypted"));
    }
    if (!absl::StrContains(text, "-----BEGIN ") ||
        !absl::StrContains(text, "PRIVATE KEY-----")) {
      return absl::InvalidArgumentError(absl::StrCat(
          key, ": ", path, " is not a PEM private key (-----BEGIN PRIVATE KEY-----)"));
    }
    return absl::OkStatus();
  }
  if (!absl::StrContains(text, "-----BEGIN CERTIFICATE-----")) {
    return absl::InvalidArgumentError(absl::StrCat(
        key, ": ", path, " is not a PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  return absl::OkStatus();
}

// A TCP server asked to verify clients (a CA) needs a certificate of its own.
absl::Status CheckServable(const AuthMaterial& m, const std::string& address) {
  if (!IsUnixAddress(address) && !m.ca_pem.empty() && m.cert_pem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "auth.tls_ca is set (client certificates required) but auth.tls_cert and "
        "auth.tls_key are not: a server on ",
        address, " needs its own certificate to serve TLS"));
  }
  return absl::OkStatus();
}

bool IsLoopbackHost(absl::string_view address) {
  return absl::StartsWith(address, "127.") || absl::StartsWith(address, "localhost:") ||
         absl::StartsWith(address, "[::1]:");
}

}  // namespace

AuthOptions AuthOptionsFrom(const Config& config) {
  AuthOptions o;
  o.token_file = config.GetString("auth.token_file");
  o.tls_cert = config.GetString("auth.tls_cert");
  o.tls_key = config.GetString("auth.tls_key");
  o.tls_ca = config.GetString("auth.tls_ca");
  o.tls_server_name = config.GetString("auth.tls_server_name");
  return o;
}

absl::StatusOr<AuthMaterial> LoadAuthMaterial(const AuthOptions& options) {
  AuthMaterial m;
  m.server_name = options.tls_server_name;
  if (!options.token_file.empty()) {
    ASSIGN_OR_RETURN(std::string text,
                     ReadAuthFile("auth.token_file", options.token_file));
    m.token = std::string(absl::StripAsciiWhitespace(text));
    for (char ch : m.token) {
      if (ch < 0x21 || ch > 0x7e) {
        return absl::InvalidArgumentError(
            absl::StrCat("auth.token_file: ", options.token_file,
                         " holds characters other than printable ASCII without spaces "
                         "(deploy/make-certs.sh makes a good token)"));
      }
    }
    if (m.token.size() < kMinTokenChars) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth.token_file: the token in ", options.token_file, " has ",
                       m.token.size(), " characters; use at least ", kMinTokenChars,
                       " (deploy/make-certs.sh makes one of 64)"));
    }
    WarnIfShared("auth.token_file", options.token_file);
  }
  if (options.tls_key.empty() != options.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        options.tls_cert.empty()
            ? absl::StrCat("auth.tls_key is set (", options.tls_key,
                           ") but auth.tls_cert is not: give the key's certificate too")
            : absl::StrCat(
                  "auth.tls_cert is set (", options.tls_cert,
                  ") but auth.tls_key is not: give the certificate's key too"));
  }
  if (!options.tls_cert.empty()) {
    ASSIGN_OR_RETURN(m.cert_pem, ReadAuthFile("auth.tls_cert", options.tls_cert));
    RETURN_IF_ERROR(CheckPem("auth.tls_cert", options.tls_cert, m.cert_pem, false));
    ASSIGN_OR_RETURN(m.key_pem, ReadAuthFile("auth.tls_key", options.tls_key));
    RETURN_IF_ERROR(CheckPem("auth.tls_key", options.tls_key, m.key_pem, true));
    WarnIfShared("auth.tls_key", options.tls_key);
  }
  if (!options.tls_ca.empty()) {
    ASSIGN_OR_RETURN(m.ca_pem, ReadAuthFile("auth.tls_ca", options.tls_ca));
    RETURN_IF_ERROR(CheckPem("auth.tls_ca", options.tls_ca, m.ca_pem, false));
  }
  if (!m.server_name.empty() && m.ca_pem.empty() && m.cert_pem.empty()) {
    return absl::InvalidArgumentError(
        "auth.tls_server_name is set but TLS is not configured (auth.tls_ca, "
        "auth.tls_cert)");
  }
  return m;
}

bool IsUnixAddress(absl::string_view address) {
  return absl::StartsWith(address, "unix:") ||
         absl::StartsWith(address, "unix-abstract:");
}

bool ConstantTimeEquals(absl::string_view secret, absl::string_view candidate) {
  // Every byte of the candidate is compared, against the secret repeated: the
  // time depends on the candidate's length only.
  volatile unsigned char diff = secret.size() == candidate.size() ? 0 : 1;
  if (secret.empty()) return candidate.empty();
  for (size_t i = 0; i < candidate.size(); ++i) {
    diff = diff | static_cast<unsigned char>(candidate[i] ^ secret[i % secret.size()]);
  }
  return diff == 0;
}

// ---- ClientAuth ----

ClientAuth::ClientAuth() : material_(std::make_shared<AuthMaterial>()) {}

ClientAuth::ClientAuth(AuthMaterial material)
    : material_(std::make_shared<AuthMaterial>(std::move(material))) {}

absl::StatusOr<ClientAuth> ClientAuth::Load(const AuthOptions& options) {
  ASSIGN_OR_RETURN(AuthMaterial m, LoadAuthMaterial(options));
  return ClientAuth(std::move(m));
}

std::shared_ptr<grpc::Channel> ClientAuth::CreateChannel(
    const std::string& address, grpc::ChannelArguments args) const {
  if (!tls() || IsUnixAddress(address)) {
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = material_->ca_pem;
  ssl.pem_private_key = material_->key_pem;
  ssl.pem_cert_chain = material_->cert_pem;
  if (!material_->server_name.empty()) {
    args.SetSslTargetNameOverride(material_->server_name);
  }
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

void ClientAuth::Apply(grpc::ClientContext* context) const {
  if (has_token()) {
    context->AddMetadata(kAuthorizationHeader, absl::StrCat(kBearer, material_->token));
  }
}

// ---- ServerAuth ----

absl::Status ValidateServerAuth(const AuthOptions& options,
                                const std::string& address) {
  ASSIGN_OR_RETURN(AuthMaterial m, LoadAuthMaterial(options));
  return CheckServable(m, address);
}

ServerAuth::ServerAuth(AuthMaterial material, bool tls, bool mutual_tls)
    : material_(std::move(material)), tls_(tls), mutual_tls_(mutual_tls) {
  if (!material_.token.empty())
    expected_header_ = absl::StrCat(kBearer, material_.token);
}

absl::StatusOr<std::unique_ptr<ServerAuth>> ServerAuth::Create(
    const AuthOptions& options, const std::string& address,
    const std::string& component, prometheus::Registry* registry) {
  ASSIGN_OR_RETURN(AuthMaterial m, LoadAuthMaterial(options));
  return Create(std::move(m), address, component, registry);
}

absl::StatusOr<std::unique_ptr<ServerAuth>> ServerAuth::Create(
    AuthMaterial material, const std::string& address, const std::string& component,
    prometheus::Registry* registry) {
  RETURN_IF_ERROR(CheckServable(material, address));
  const bool unix_socket = IsUnixAddress(address);
  const bool tls = !unix_socket && !material.cert_pem.empty();
  const bool mutual = tls && !material.ca_pem.empty();
  std::unique_ptr<ServerAuth> auth(new ServerAuth(std::move(material), tls, mutual));
  if (registry != nullptr) {
    auth->failures_ = &CounterFamily(
        *registry, absl::StrCat("nbrl_", component, "_auth_failures_total"),
        "Calls refused for missing or wrong credentials, by reason.");
    for (const char* reason : {kMissingToken, kWrongToken, kNoClientCertificate}) {
      auth->failures_->Add({{"reason", reason}});
    }
  }
  if (unix_socket &&
      (!auth->material_.cert_pem.empty() || !auth->material_.ca_pem.empty())) {
    LOG(INFO) << address << " is a unix socket: TLS does not apply (its file "
              << "permissions guard it)"
              << (auth->has_token() ? "; the token does" : "");
  }
  if (!auth->has_token() && !tls && !unix_socket && !IsLoopbackHost(address)) {
    LOG(WARNING) << "serving on " << address
                 << " without authentication: anyone who reaches it may call it. "
                    "Set auth.token_file and TLS (docs/security.md).";
  }
  return auth;
}

std::shared_ptr<grpc::ServerCredentials> ServerAuth::Credentials() const {
  if (!tls_) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      mutual_tls_ ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                  : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_root_certs = material_.ca_pem;
  ssl.pem_key_cert_pairs.push_back({material_.key_pem, material_.cert_pem});
  return grpc::SslServerCredentials(ssl);
}

std::string ServerAuth::Describe() const {
  std::string how = mutual_tls_ ? "TLS with client certificates"
                    : tls_      ? "TLS (no client certificates)"
                                : "plaintext";
  return absl::StrCat(how, has_token() ? " + token" : ", no token");
}

grpc::Status ServerAuth::Refuse(const char* reason, const std::string& message,
                                const grpc::ServerContextBase& context,
                                absl::string_view method) const {
  const uint64_t n = ++refused_;
  if (failures_ != nullptr) failures_->Add({{"reason", reason}}).Increment();
  LOG_EVERY_T(WARNING, 5) << "refused " << method << " from " << context.peer() << ": "
                          << message << " (" << n << " calls refused so far)";
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, message);
}

grpc::Status ServerAuth::Check(const grpc::ServerContextBase& context,
                               absl::string_view method) const {
  if (mutual_tls_) {
    std::shared_ptr<const grpc::AuthContext> peer = context.auth_context();
    if (peer == nullptr || !peer->IsPeerAuthenticated()) {
      return Refuse(kNoClientCertificate,
                    "this server requires a client certificate signed by the run's CA "
                    "(auth.tls_cert, auth.tls_key)",
                    context, method);
    }
  }
  if (expected_header_.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto [first, last] = metadata.equal_range(kAuthorizationHeader);
  if (first == last) {
    return Refuse(kMissingToken,
                  "the call carries no token; this server requires the run's token "
                  "(auth.token_file)",
                  context, method);
  }
  if (std::next(first) != last) {
    return Refuse(kWrongToken, "the call carries several authorization headers",
                  context, method);
  }
  if (!ConstantTimeEquals(expected_header_, absl::string_view(first->second.data(),
                                                              first->second.size()))) {
    return Refuse(kWrongToken,
                  "the call's token is not this run's (check auth.token_file)", context,
                  method);
  }
  return grpc::Status::OK;
}

}  // namespace nbrl::common
