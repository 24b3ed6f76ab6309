#include "common/process.h"

#include <malloc.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/command_line.h"
#include "common/file_util.h"
#include "common/grpc_auth.h"
#include "common/logging.h"
#include "common/nbrl_config.h"
#include "common/version.h"
#include "glog/logging.h"

namespace nbrl::common {
namespace {

constexpr int kExitRunFailed = 1;
constexpr int kExitUsage = 2;

std::string Usage(const ProgramSpec& spec) {
  return absl::StrCat(
      spec.name, ": ", spec.summary, "\n\nUsage: ", spec.name,
      " [--config FILE] [key=value ...] [options]\n\n", spec.usage,
      spec.usage.empty() ? "" : "\n",
      "Options:\n"
      "  --config FILE    YAML configuration of the run (default: built-in defaults)\n"
      "  key=value        override one configuration key, e.g. metrics.port=9400\n"
      "  --print-config   print the resolved configuration and exit\n"
      "  --help-config    list every configuration key with its type and default\n"
      "  --version        print the version and exit\n"
      "  --help           this text\n\n"
      "SIGINT or SIGTERM stops the process gracefully (a second one stops it now;\n"
      "a second SIGTERM within 3 s of the first counts as the same request).\n");
}

void PrintError(const ProgramSpec& spec, const absl::Status& status) {
  std::cerr << spec.name << ": " << status.message() << "\n";
}

}  // namespace

std::string PrometheusTarget(const std::string& address, const std::string& component,
                             int64_t rank, const std::string& run_id) {
  return absl::StrCat("[{\"targets\": [\"", address,
                      "\"], \"labels\": {\"component\": \"", component,
                      "\", \"rank\": \"", rank, "\", \"run\": \"", run_id, "\"}}]\n");
}

std::string RunId(const Config& config) {
  std::string id = config.GetString("run.id");
  if (!id.empty()) return id;
  std::string dir = config.GetString("run.dir");
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  size_t slash = dir.rfind('/');
  return slash == std::string::npos ? dir : dir.substr(slash + 1);
}

void KeepFreedMemoryForReuse() {
  // Blocks up to 32 MiB (glibc's largest mmap threshold) come from the heap, and
  // the heap is trimmed only past 1 GiB of free memory at its top.
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

int RunProgram(const ProgramSpec& spec, int argc, char** argv) {
  KeepFreedMemoryForReuse();
  CommandLineOptions cl_options;
  cl_options.allow_positional = spec.allow_positional;
  cl_options.value_flags = spec.value_flags;
  cl_options.bool_flags = spec.bool_flags;
  absl::StatusOr<CommandLine> cl = ParseCommandLine(argc, argv, cl_options);
  if (!cl.ok()) {
    PrintError(spec, cl.status());
    return kExitUsage;
  }
  const ConfigSchema& schema = NbrlConfigSchema();
  if (cl->help) {
    std::cout << Usage(spec);
    return 0;
  }
  if (cl->help_config) {
    std::cout << "Configuration keys (set them in the YAML file or as key=value):\n"
              << schema.Describe();
    return 0;
  }
  if (cl->version) {
    std::cout << spec.name << " " << kVersion << "\n";
    return 0;
  }
  absl::StatusOr<Config> config = Config::Load(schema, cl->config_path, cl->overrides);
  if (!config.ok()) {
    PrintError(spec, config.status());
    return kExitUsage;
  }
  if (cl->print_config) {
    std::cout << config->ToYaml();
    return 0;
  }

  // SIGINT/SIGTERM handling before anything else starts.
  absl::StatusOr<std::unique_ptr<ShutdownSignal>> shutdown =
      ShutdownSignal::Install(config->GetDuration(spec.shutdown_grace_key));
  if (!shutdown.ok()) {
    PrintError(spec, shutdown.status());
    return kExitRunFailed;
  }

  const int64_t rank = config->GetInt("process.rank");
  LogOptions log_options;
  log_options.tag = absl::StrCat(spec.component, "/", rank);
  log_options.level = config->GetString("log.level");
  log_options.verbosity = static_cast<int>(config->GetInt("log.verbosity"));
  if (absl::Status st = InitLogging(log_options); !st.ok()) {
    PrintError(spec, st);
    return kExitUsage;
  }
  // Every program is a gRPC server or client: unusable auth files are
  // configuration errors, reported before anything starts.
  if (absl::Status st = LoadAuthMaterial(AuthOptionsFrom(*config)).status(); !st.ok()) {
    PrintError(spec, st);
    return kExitUsage;
  }
  if (spec.validate) {
    if (absl::Status st = spec.validate(*config, cl->positional); !st.ok()) {
      PrintError(spec, st);
      return kExitUsage;
    }
  }

  ProcessContext ctx;
  ctx.config = &*config;
  ctx.shutdown = shutdown->get();
  ctx.run_dir = config->GetString("run.dir");
  ctx.process_name = absl::StrCat(spec.component, "-", rank);
  ctx.args = cl->positional;
  if (absl::Status st = MakeDirectories(ctx.run_dir); !st.ok()) {
    PrintError(spec, st);
    return kExitRunFailed;
  }
  const std::string config_path =
      absl::StrCat(ctx.run_dir, "/config/", ctx.process_name, ".yaml");
  if (absl::Status st = config->WriteResolved(config_path); !st.ok()) {
    PrintError(spec, st);
    return kExitRunFailed;
  }

  ctx.registry = std::make_shared<prometheus::Registry>();
  AddProcessMetrics(*ctx.registry, spec.component);
  MetricsOptions metrics_options;
  metrics_options.enabled = config->GetBool("metrics.enabled");
  metrics_options.host = config->GetString("metrics.host");
  metrics_options.port = static_cast<int>(config->GetInt("metrics.port"));
  absl::StatusOr<std::unique_ptr<MetricsServer>> metrics =
      MetricsServer::Start(metrics_options, ctx.registry);
  if (!metrics.ok()) {
    PrintError(spec, metrics.status());
    return kExitUsage;
  }
  ctx.metrics = metrics->get();
  std::string target_path;
  if ((*metrics)->port() != 0) {
    target_path = absl::StrCat(ctx.run_dir, "/prometheus/", ctx.process_name, ".json");
    absl::Status st = WriteFileAtomically(
        target_path,
        PrometheusTarget((*metrics)->address(), spec.component, rank, RunId(*config)));
    if (!st.ok()) LOG(WARNING) << "cannot write the Prometheus target: " << st;
  }

  LOG(INFO) << spec.name << " " << kVersion << " starting; run " << RunId(*config)
            << " in " << ctx.run_dir << "; resolved config in " << config_path
            << "; metrics "
            << ((*metrics)->port() ? (*metrics)->url() : std::string("off"));
  absl::Status result = spec.run(ctx);
  if (!target_path.empty()) std::remove(target_path.c_str());
  if (!result.ok()) {
    LOG(ERROR) << spec.name << " failed: " << result;
    PrintError(spec, result);
    google::FlushLogFiles(google::GLOG_INFO);
    return kExitRunFailed;
  }
  LOG(INFO) << spec.name << " stopped"
            << ((*shutdown)->requested()
                    ? absl::StrCat(" after ", (*shutdown)->reason())
                    : std::string());
  std::cout.flush();
  google::FlushLogFiles(google::GLOG_INFO);
  return 0;
}

}  // namespace nbrl::common
