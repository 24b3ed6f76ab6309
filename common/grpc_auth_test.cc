// Authentication of gRPC calls: checks of the auth.* files, and real calls over a
// unix socket (token) and loopback TCP (TLS, mutual TLS, token) against a small
// service whose handlers authenticate like nbrl's. Certificates come from
// deploy/make-certs.sh; the TLS tests skip without openssl.
#include "common/grpc_auth.h"

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbrl/v1/sandbox.grpc.pb.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::common {
namespace {

using ::testing::HasSubstr;

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), 0600);
}

// A valid-looking token of `n` characters.
std::string Token(char c = 'a', size_t n = 32) { return std::string(n, c); }

// ---- Checks of the files ----

TEST(LoadAuthMaterialTest, NothingConfiguredMeansNoTlsAndNoToken) {
  auto m = LoadAuthMaterial(AuthOptions{});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->token.empty());
  EXPECT_TRUE(m->cert_pem.empty());
  ClientAuth client(*m);
  EXPECT_FALSE(client.tls());
  EXPECT_FALSE(client.has_token());
}

TEST(LoadAuthMaterialTest, TokenFileIsTrimmed) {
  testutil::TempDir tmp("nbrl-auth");
  const std::string& dir = tmp.path();
  Write(dir + "/token", "  " + Token() + "\n\n");
  AuthOptions o;
  o.token_file = dir + "/token";
  auto m = LoadAuthMaterial(o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->token, Token());
}

TEST(LoadAuthMaterialTest, BadTokenFilesNameTheKeyAndTheFile) {
  testutil::TempDir tmp("nbrl-auth");
  const std::string& dir = tmp.path();
  Write(dir + "/empty", "\n");
  Write(dir + "/short", "abc\n");
  Write(dir + "/spaces", "abcdefgh ijklmnopqrstuvwxyz\n");
  struct Case {
    std::string file;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{{"missing", "cannot read"},
                                         {"empty", "is empty"},
                                         {"short", "at least 16"},
                                         {"spaces", "printable ASCII"}}) {
    AuthOptions o;
    o.token_file = dir + "/" + c.file;
    auto m = LoadAuthMaterial(o);
    ASSERT_FALSE(m.ok()) << c.file;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(m.status().message(), HasSubstr("auth.token_file"));
    EXPECT_THAT(m.status().message(), HasSubstr(o.token_file));
    EXPECT_THAT(m.status().message(), HasSubstr(c.expected));
  }
}

TEST(LoadAuthMaterialTest, KeyAndCertificateComeTogether) {
  testutil::TempDir tmp("nbrl-auth");
  const std::string& dir = tmp.path();
  Write(dir + "/cert.pem",
        "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n");
  Write(dir + "/key.pem",
        "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n");
  AuthOptions key_only;
  key_only.tls_key = dir + "/key.pem";
  auto m = LoadAuthMaterial(key_only);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("auth.tls_cert is not"));
  AuthOptions cert_only;
  cert_only.tls_cert = dir + "/cert.pem";
  m = LoadAuthMaterial(cert_only);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("auth.tls_key is not"));
  AuthOptions both = cert_only;
  both.tls_key = key_only.tls_key;
  EXPECT_TRUE(LoadAuthMaterial(both).ok());
}

TEST(LoadAuthMaterialTest, FilesThatAreNotPemAreRefused) {
  testutil::TempDir tmp("nbrl-auth");
  const std::string& dir = tmp.path();
  Write(dir + "/cert.pem",
        "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n");
  Write(dir + "/key.pem",
        "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n");
  Write(dir + "/junk", "hello\n");
  Write(dir + "/empty", "");
  Write(dir + "/encrypted",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA\n-----END ENCRYPTED PRIVATE "
        "KEY-----\n");
  struct Case {
    std::string cert, key, ca, expected;
  };
  for (const Case& c : std::vector<Case>{
           {"junk", "key.pem", "", "auth.tls_cert: " + dir + "/junk is not a PEM"},
           {"cert.pem", "junk", "", "auth.tls_key: " + dir + "/junk is not a PEM"},
           {"cert.pem", "encrypted", "", "encrypted key"},
           {"cert.pem", "key.pem", "junk",
            "auth.tls_ca: " + dir + "/junk is not a PEM"},
           {"cert.pem", "key.pem", "empty", "auth.tls_ca: " + dir + "/empty is empty"},
           {"cert.pem", "key.pem", "missing", "auth.tls_ca: cannot read"},
           {"missing", "key.pem", "", "auth.tls_cert: cannot read " + dir + "/missing"},
       }) {
    AuthOptions o;
    o.tls_cert = dir + "/" + c.cert;
    o.tls_key = dir + "/" + c.key;
    if (!c.ca.empty()) o.tls_ca = dir + "/" + c.ca;
    auto m = LoadAuthMaterial(o);
    ASSERT_FALSE(m.ok()) << c.expected;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(m.status().message(), HasSubstr(c.expected));
  }
}

TEST(LoadAuthMaterialTest, ServerNameWithoutTlsIsRefused) {
  AuthOptions o;
  o.tls_server_name = "learner.example";
  auto m = LoadAuthMaterial(o);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(), HasSubstr("auth.tls_server_name"));
}

TEST(ServerAuthTest, ATcpServerAskedToVerifyClientsNeedsACertificate) {
  testutil::TempDir tmp("nbrl-auth");
  const std::string& dir = tmp.path();
  Write(dir + "/ca.pem",
        "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n");
  AuthOptions o;
  o.tls_ca = dir + "/ca.pem";
  absl::Status st = ValidateServerAuth(o, "127.0.0.1:0");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("auth.tls_cert"));
  EXPECT_FALSE(ServerAuth::Create(o, "127.0.0.1:0", "test", nullptr).ok());
  // TLS does not apply to a unix socket: nothing is missing there.
  EXPECT_TRUE(ValidateServerAuth(o, "unix:" + dir + "/s.sock").ok());
  auto unix_auth = ServerAuth::Create(o, "unix:" + dir + "/s.sock", "test", nullptr);
  ASSERT_TRUE(unix_auth.ok());
  EXPECT_FALSE((*unix_auth)->tls());
}

TEST(ConstantTimeEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("Bearer abc", "Bearer abc"));
  EXPECT_FALSE(ConstantTimeEquals("Bearer abc", "Bearer abd"));
  EXPECT_FALSE(ConstantTimeEquals("Bearer abc", "Bearer ab"));
  EXPECT_FALSE(ConstantTimeEquals("Bearer abc", "Bearer abcabc"));
  EXPECT_FALSE(ConstantTimeEquals("Bearer abc", ""));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

// ---- Real calls ----

// Health (unary) and Attach (a server stream that sends one event) behind
// Authenticate, as nbrl's services do it.
class EchoService final : public v1::SandboxService::Service {
 public:
  explicit EchoService(const ServerAuth* auth) : auth_(auth) {}
  grpc::Status Health(grpc::ServerContext* ctx, const v1::HealthRequest*,
                      v1::HealthResponse* resp) override {
    if (grpc::Status s = Authenticate(auth_, *ctx, "Health"); !s.ok()) return s;
    resp->set_version("served");
    return grpc::Status::OK;
  }
  grpc::Status Attach(grpc::ServerContext* ctx, const v1::AttachRequest*,
                      grpc::ServerWriter<v1::AttachEvent>* writer) override {
    if (grpc::Status s = Authenticate(auth_, *ctx, "Attach"); !s.ok()) return s;
    v1::AttachEvent e;
    e.set_message("secret bytes");
    writer->Write(e);
    return grpc::Status::OK;
  }

 private:
  const ServerAuth* auth_;
};

double Counter(prometheus::Registry& registry, const std::string& name,
               const std::string& reason) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) {
        if (l.name == "reason" && l.value == reason) return m.counter.value;
      }
    }
  }
  return -1;  // absent
}

// A running EchoService with its credentials.
struct Server {
  std::unique_ptr<ServerAuth> auth;
  std::unique_ptr<EchoService> service;
  std::unique_ptr<grpc::Server> server;
  std::string address;  // what clients dial
  std::shared_ptr<prometheus::Registry> registry;

  ~Server() {
    if (server) server->Shutdown(std::chrono::system_clock::now());
  }
};

std::unique_ptr<Server> Serve(const AuthOptions& options, const std::string& address) {
  auto s = std::make_unique<Server>();
  s->registry = std::make_shared<prometheus::Registry>();
  auto auth = ServerAuth::Create(options, address, "test", s->registry.get());
  EXPECT_TRUE(auth.ok()) << auth.status();
  if (!auth.ok()) return nullptr;
  s->auth = *std::move(auth);
  s->service = std::make_unique<EchoService>(s->auth.get());
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort(address, s->auth->Credentials(), &port);
  b.RegisterService(s->service.get());
  s->server = b.BuildAndStart();
  EXPECT_NE(s->server, nullptr);
  if (s->server == nullptr) return nullptr;
  s->address = IsUnixAddress(address)
                   ? address
                   : address.substr(0, address.rfind(':') + 1) + std::to_string(port);
  return s;
}

// The outcome of one call of each kind.
struct Outcome {
  grpc::Status unary;
  grpc::Status stream;
  int stream_messages = 0;
};

Outcome Call(const ClientAuth& client, const std::string& address) {
  auto stub = v1::SandboxService::NewStub(
      client.CreateChannel(address, grpc::ChannelArguments()));
  Outcome out;
  {
    grpc::ClientContext ctx;
    client.Apply(&ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::HealthResponse resp;
    out.unary = stub->Health(&ctx, v1::HealthRequest(), &resp);
    if (out.unary.ok()) {
      EXPECT_EQ(resp.version(), "served");
    }
  }
  {
    grpc::ClientContext ctx;
    client.Apply(&ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto reader = stub->Attach(&ctx, v1::AttachRequest());
    v1::AttachEvent e;
    while (reader->Read(&e)) ++out.stream_messages;
    out.stream = reader->Finish();
  }
  return out;
}

ClientAuth Client(const AuthOptions& o) {
  auto c = ClientAuth::Load(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ClientAuth();
}

TEST(GrpcAuthTest, TheTokenGuardsAUnixSocket) {
  testutil::TempDir tmp("nbrl-auth");
  const std::string& dir = tmp.path();
  Write(dir + "/token", Token('r') + "\n");
  Write(dir + "/other", Token('x') + "\n");
  AuthOptions server_options;
  server_options.token_file = dir + "/token";
  auto server = Serve(server_options, "unix:" + dir + "/s.sock");
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->auth->Describe(), "plaintext + token");
  const char* family = "nbrl_test_auth_failures_total";
  // Every reason exists from the start, at 0.
  for (const char* r : {ServerAuth::kMissingToken, ServerAuth::kWrongToken,
                        ServerAuth::kNoClientCertificate}) {
    EXPECT_EQ(Counter(*server->registry, family, r), 0) << r;
  }

  Outcome none = Call(ClientAuth(), server->address);
  EXPECT_EQ(none.unary.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(none.unary.error_message(), HasSubstr("carries no token"));
  EXPECT_EQ(none.stream.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(none.stream_messages, 0);
  EXPECT_EQ(Counter(*server->registry, family, ServerAuth::kMissingToken), 2);

  AuthOptions wrong;
  wrong.token_file = dir + "/other";
  Outcome bad = Call(Client(wrong), server->address);
  EXPECT_EQ(bad.unary.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(bad.unary.error_message(), HasSubstr("not this run's"));
  EXPECT_EQ(bad.stream.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(bad.stream_messages, 0);
  EXPECT_EQ(Counter(*server->registry, family, ServerAuth::kWrongToken), 2);

  // TLS settings do not apply to the unix socket; the token does.
  AuthOptions right = server_options;
  Outcome good = Call(Client(right), server->address);
  EXPECT_TRUE(good.unary.ok()) << good.unary.error_message();
  EXPECT_TRUE(good.stream.ok()) << good.stream.error_message();
  EXPECT_EQ(good.stream_messages, 1);
  EXPECT_EQ(Counter(*server->registry, family, ServerAuth::kMissingToken), 2);
}

TEST(GrpcAuthTest, ATokenMayNotBeSentTwice) {
  testutil::TempDir tmp("nbrl-auth");
  const std::string& dir = tmp.path();
  Write(dir + "/token", Token('r'));
  AuthOptions o;
  o.token_file = dir + "/token";
  auto server = Serve(o, "unix:" + dir + "/s.sock");
  ASSERT_NE(server, nullptr);
  ClientAuth client = Client(o);
  auto stub = v1::SandboxService::NewStub(
      client.CreateChannel(server->address, grpc::ChannelArguments()));
  grpc::ClientContext ctx;
  client.Apply(&ctx);
  ctx.AddMetadata("authorization", "Bearer " + Token('x'));
  v1::HealthResponse resp;
  grpc::Status st = stub->Health(&ctx, v1::HealthRequest(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// Credentials made by deploy/make-certs.sh, once for all TLS tests.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
      skip_ = "openssl is not installed (deploy/setup.sh installs it)";
      return;
    }
    const char* src = std::getenv("NBRL_SOURCE_DIR");
    if (src == nullptr) {
      skip_ = "NBRL_SOURCE_DIR is not set (run through ctest)";
      return;
    }
    tmp_ = new testutil::TempDir("nbrl-tls");
    dir_ = new std::string(tmp_->path());
    const std::string script = std::string(src) + "/deploy/make-certs.sh";
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"--out", *dir_ + "/run"},
             {"--out", *dir_ + "/other"},  // another run's CA
             {"--out", *dir_ + "/named", "--host", "learner.nbrl.internal"}}) {
      std::vector<std::string> argv = {"/bin/bash", script};
      argv.insert(argv.end(), args.begin(), args.end());
      auto r = testutil::RunCommand(argv);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(r->exit_code, 0) << r->err;
    }
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
  }
  // The options of run `run` (run, other, named) for a process using `cert`.
  static AuthOptions Options(const std::string& run, const std::string& cert,
                             bool ca = true, bool token = true) {
    AuthOptions o;
    const std::string d = *dir_ + "/" + run + "/";
    if (token) o.token_file = d + "token";
    if (!cert.empty()) {
      o.tls_cert = d + cert + ".crt";
      o.tls_key = d + cert + ".key";
    }
    if (ca) o.tls_ca = d + "ca.crt";
    return o;
  }

  static testutil::TempDir* tmp_;
  static std::string* dir_;
  static std::string skip_;
};
testutil::TempDir* TlsTest::tmp_ = nullptr;
std::string* TlsTest::dir_ = nullptr;
std::string TlsTest::skip_;

TEST_F(TlsTest, MutualTlsAdmitsOnlyTheRunsCertificatesAndToken) {
  auto server = Serve(Options("run", "server"), "127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->auth->mutual_tls());
  EXPECT_EQ(server->auth->Describe(), "TLS with client certificates + token");

  Outcome good = Call(Client(Options("run", "client")), server->address);
  EXPECT_TRUE(good.unary.ok()) << good.unary.error_message();
  EXPECT_TRUE(good.stream.ok()) << good.stream.error_message();
  EXPECT_EQ(good.stream_messages, 1);

  // Refused at the handshake: no client certificate, one from another CA, a
  // server this client cannot verify, and plaintext.
  struct Case {
    std::string name;
    ClientAuth client;
  };
  AuthOptions no_cert = Options("run", "");
  AuthOptions other_ca_cert = Options("run", "client");
  other_ca_cert.tls_cert = *dir_ + "/other/client.crt";
  other_ca_cert.tls_key = *dir_ + "/other/client.key";
  AuthOptions trusts_other_ca = Options("run", "client");
  trusts_other_ca.tls_ca = *dir_ + "/other/ca.crt";
  AuthOptions plaintext = Options("run", "", /*ca=*/false);
  for (const Case& c :
       std::vector<Case>{{"no client certificate", Client(no_cert)},
                         {"another CA's certificate", Client(other_ca_cert)},
                         {"another CA trusted", Client(trusts_other_ca)},
                         {"plaintext", Client(plaintext)}}) {
    Outcome o = Call(c.client, server->address);
    EXPECT_FALSE(o.unary.ok()) << c.name;
    EXPECT_EQ(o.unary.error_code(), grpc::StatusCode::UNAVAILABLE)
        << c.name << ": " << o.unary.error_message();
    EXPECT_FALSE(o.stream.ok()) << c.name;
    EXPECT_EQ(o.stream_messages, 0) << c.name;
  }

  // The run's certificate without the token.
  Outcome no_token = Call(
      Client(Options("run", "client", /*ca=*/true, /*token=*/false)), server->address);
  EXPECT_EQ(no_token.unary.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(no_token.stream.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(no_token.stream_messages, 0);
  AuthOptions wrong_token = Options("run", "client");
  wrong_token.token_file = *dir_ + "/other/token";
  Outcome wrong = Call(Client(wrong_token), server->address);
  EXPECT_EQ(wrong.unary.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(wrong.stream_messages, 0);
  EXPECT_EQ(Counter(*server->registry, "nbrl_test_auth_failures_total",
                    ServerAuth::kMissingToken),
            2);
  EXPECT_EQ(Counter(*server->registry, "nbrl_test_auth_failures_total",
                    ServerAuth::kWrongToken),
            2);
}

TEST_F(TlsTest, ServerOnlyTlsAcceptsClientsWithoutCertificates) {
  auto server = Serve(Options("run", "server", /*ca=*/false), "127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->auth->tls());
  EXPECT_FALSE(server->auth->mutual_tls());
  Outcome o = Call(Client(Options("run", "")), server->address);
  EXPECT_TRUE(o.unary.ok()) << o.unary.error_message();
  EXPECT_EQ(o.stream_messages, 1);
  // The client still verifies the server.
  AuthOptions other = Options("run", "");
  other.tls_ca = *dir_ + "/other/ca.crt";
  EXPECT_FALSE(Call(Client(other), server->address).unary.ok());
}

TEST_F(TlsTest, TheServerNameCanBeOverridden) {
  // This certificate names learner.nbrl.internal only, not 127.0.0.1.
  auto server = Serve(Options("named", "server"), "127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  AuthOptions by_ip = Options("named", "client");
  EXPECT_FALSE(Call(Client(by_ip), server->address).unary.ok());
  AuthOptions by_name = by_ip;
  by_name.tls_server_name = "learner.nbrl.internal";
  Outcome o = Call(Client(by_name), server->address);
  EXPECT_TRUE(o.unary.ok()) << o.unary.error_message();
}

TEST_F(TlsTest, TheRunsServerCertificateServesClientsToo) {
  // One YAML for every process: the server certificate is also a client one.
  auto server = Serve(Options("run", "server"), "127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  Outcome o = Call(Client(Options("run", "server")), server->address);
  EXPECT_TRUE(o.unary.ok()) << o.unary.error_message();
}

TEST_F(TlsTest, MakeCertsWritesSecretsPrivately) {
  for (const char* f : {"ca.key", "server.key", "client.key", "token"}) {
    struct stat st;
    ASSERT_EQ(::stat((*dir_ + "/run/" + f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  auto token = LoadAuthMaterial(Options("run", "", false, true));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->token.size(), 64u);
}

}  // namespace
}  // namespace nbrl::common
