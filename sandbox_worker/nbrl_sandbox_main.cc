// nbrl-sandbox: the sandbox worker.
//
//   nbrl-sandbox [--config FILE] [key=value ...]            serve SandboxService
//   nbrl-sandbox run CELL.py [CELL.py ...] [key=value ...]  run files as the cells
//                                                           of one fresh session,
//                                                           one JSON line per cell
//   nbrl-sandbox index CORPUS.jsonl INDEX_DIR               build the search index
#include <grpcpp/grpcpp.h>

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/grpc_auth.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "sandbox_worker/sandbox_service.h"
#include "sandbox_worker/search_index.h"

namespace nbrl::sandbox {
namespace {

SessionManagerOptions ManagerOptions(const common::Config& c) {
  SessionManagerOptions o;
  LauncherOptions& l = o.launcher;
  l.bwrap_path = c.GetString("sandbox.bwrap");
  l.python_path = c.GetString("sandbox.python");
  l.workspace_bytes = c.GetInt("sandbox.workspace_bytes");
  l.tmp_bytes = c.GetInt("sandbox.tmp_bytes");
  l.address_space_bytes = c.GetInt("sandbox.memory_bytes");
  l.cpu_time = c.GetDuration("sandbox.cpu_time");
  l.max_processes = c.GetInt("sandbox.max_processes");
  l.max_open_files = c.GetInt("sandbox.max_open_files");
  l.max_file_bytes = c.GetInt("sandbox.max_file_bytes");
  l.uid_base = c.GetInt("sandbox.uid_base");
  l.seccomp = c.GetBool("sandbox.seccomp");
  o.session.interrupt_grace = c.GetDuration("sandbox.interrupt_grace");
  o.tools.call_timeout = c.GetDuration("sandbox.tools.call_timeout");
  o.tools.max_calls_per_session =
      static_cast<int>(c.GetInt("sandbox.tools.max_calls_per_session"));
  o.warm_sessions = static_cast<int>(c.GetInt("sandbox.warm_sessions"));
  o.max_sessions = static_cast<int>(c.GetInt("sandbox.max_sessions"));
  o.idle_timeout = c.GetDuration("sandbox.idle_timeout");
  o.max_idle_timeout = c.GetDuration("sandbox.max_idle_timeout");
  o.start_timeout = c.GetDuration("sandbox.start_timeout");
  o.cell_timeout = c.GetDuration("sandbox.cell_timeout");
  o.max_cell_timeout = c.GetDuration("sandbox.max_cell_timeout");
  o.output_bytes = static_cast<size_t>(c.GetInt("sandbox.output_bytes"));
  o.max_output_bytes = static_cast<size_t>(c.GetInt("sandbox.max_output_bytes"));
  o.max_code_bytes = static_cast<size_t>(c.GetInt("sandbox.max_code_bytes"));
  o.default_tools = c.GetStringList("sandbox.tools.default");
  return o;
}

absl::StatusOr<std::unique_ptr<SearchIndex>> OpenTools(const common::Config& c) {
  const std::string& dir = c.GetString("sandbox.tools.index");
  if (dir.empty()) return std::unique_ptr<SearchIndex>();
  SearchIndexOptions o;
  o.page_chars = static_cast<int>(c.GetInt("sandbox.tools.page_chars"));
  o.max_page_chars = std::max(o.page_chars, o.max_page_chars);
  return SearchIndex::Open(dir, o);
}

absl::Status Index(const std::vector<std::string>& args) {
  if (args.size() != 3) {
    return absl::InvalidArgumentError(
        "usage: nbrl-sandbox index CORPUS.jsonl INDEX_DIR");
  }
  ASSIGN_OR_RETURN(int64_t n, BuildSearchIndex(args[1], args[2]));
  std::cout << "indexed " << n << " documents into " << args[2] << std::endl;
  return absl::OkStatus();
}

absl::Status Run(common::ProcessContext& ctx) {
  if (ctx.args.size() < 2) {
    return absl::InvalidArgumentError("usage: nbrl-sandbox run CELL.py [CELL.py ...]");
  }
  SandboxMetrics metrics(*ctx.registry);
  ASSIGN_OR_RETURN(std::unique_ptr<SearchIndex> tools, OpenTools(*ctx.config));
  SessionManagerOptions options = ManagerOptions(*ctx.config);
  options.warm_sessions = 1;
  ASSIGN_OR_RETURN(auto manager,
                   SessionManager::Create(options, tools.get(), &metrics));
  ASSIGN_OR_RETURN(std::string id, manager->Open(OpenRequest{"cli", {}, {}, "run"}));
  for (size_t i = 1; i < ctx.args.size(); ++i) {
    ASSIGN_OR_RETURN(std::string code, common::ReadFile(ctx.args[i]));
    ASSIGN_OR_RETURN(CellResult r,
                     manager->Execute(id, CellRequest{code, absl::ZeroDuration(), 0}));
    nlohmann::json j = CellResultToJson(r);
    j["cell"] = ctx.args[i];
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
              << std::endl;
  }
  manager->Close(id);
  return absl::OkStatus();
}

// sandbox.address, or the run's default unix socket.
std::string ServeAddress(const common::Config& c) {
  std::string address = c.GetString("sandbox.address");
  if (address.empty()) {
    address = absl::StrCat("unix:", c.GetString("run.dir"), "/sandbox-",
                           c.GetInt("process.rank"), ".sock");
  }
  return address;
}

absl::Status Serve(common::ProcessContext& ctx) {
  if (ctx.args.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("serve takes no arguments, got ", ctx.args[1]));
  }
  SandboxMetrics metrics(*ctx.registry);
  ASSIGN_OR_RETURN(std::unique_ptr<SearchIndex> tools, OpenTools(*ctx.config));
  SessionManagerOptions options = ManagerOptions(*ctx.config);
  ASSIGN_OR_RETURN(auto manager,
                   SessionManager::Create(options, tools.get(), &metrics));
  const std::string address = ServeAddress(*ctx.config);
  ASSIGN_OR_RETURN(std::unique_ptr<common::ServerAuth> auth,
                   common::ServerAuth::Create(common::AuthOptionsFrom(*ctx.config),
                                              address, "sandbox", ctx.registry.get()));
  SandboxServiceImpl service(manager.get(), auth.get());
  if (absl::StartsWith(address, "unix:")) unlink(address.substr(5).c_str());
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, auth->Credentials(), &port);
  service.AddTo(&builder);  // registers it; caps messages at MaxMessageBytes(options)
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "sandbox: cannot listen on ", address,
        auth->tls() ? " with TLS (are auth.tls_cert and auth.tls_key a matching "
                      "PEM certificate and key?)"
                    : ""));
  }
  std::string served = address;
  if (!absl::StartsWith(address, "unix:")) {
    served = absl::StrCat(address.substr(0, address.rfind(':')), ":", port);
  }
  LOG(INFO) << "sandbox: serving SandboxService on " << served << " ("
            << auth->Describe() << "; " << options.warm_sessions << " warm, "
            << options.max_sessions << " max sessions, tools: "
            << (tools ? ctx.config->GetString("sandbox.tools.index") : "none") << ")";
  std::cout << "ready address=" << served << " metrics_port=" << ctx.metrics->port()
            << std::endl;
  while (!ctx.shutdown->WaitFor(absl::Seconds(1))) {
  }
  manager->Drain();
  service.Shutdown();  // ends Attach streams without closing their sessions
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  LOG(INFO) << "sandbox: stopped serving";
  return absl::OkStatus();
}

}  // namespace
}  // namespace nbrl::sandbox

int main(int argc, char** argv) {
  nbrl::common::ProgramSpec spec;
  spec.name = "nbrl-sandbox";
  spec.component = "sandbox";
  spec.summary = "sandboxed Python notebook sessions for nbrl agents";
  spec.usage =
      "  nbrl-sandbox [serve]                    serve SandboxService "
      "(sandbox.address)\n"
      "  nbrl-sandbox run CELL.py [CELL.py ...]  run files as the cells of one fresh\n"
      "                                          session; print one JSON line per "
      "cell\n"
      "  nbrl-sandbox index CORPUS.jsonl DIR     build the web_search/read_page index\n"
      "                                          from JSON Lines {id, title, text}\n";
  spec.allow_positional = true;
  spec.validate = [](const nbrl::common::Config& c,
                     const std::vector<std::string>& args) -> absl::Status {
    if (!args.empty() && args[0] != "serve") return absl::OkStatus();
    return nbrl::common::ValidateServerAuth(nbrl::common::AuthOptionsFrom(c),
                                            nbrl::sandbox::ServeAddress(c));
  };
  spec.run = [](nbrl::common::ProcessContext& ctx) -> absl::Status {
    std::string cmd = ctx.args.empty() ? "serve" : ctx.args[0];
    if (cmd == "serve") return nbrl::sandbox::Serve(ctx);
    if (cmd == "run") return nbrl::sandbox::Run(ctx);
    if (cmd == "index") return nbrl::sandbox::Index(ctx.args);
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command '", cmd, "' (serve, run, index; see --help)"));
  };
  return nbrl::common::RunProgram(spec, argc, argv);
}
