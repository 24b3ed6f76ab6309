#include "common/nbrl_config.h"

namespace nbrl::common {
namespace {

void DeclareRun(ConfigSchema& s) {
  s.String("run.dir", "runs/latest",
           "Directory for this run's outputs: resolved configs, logs, checkpoints, "
           "metric targets. Created when missing.");
  s.String("run.id", "", "Name of the run; empty means the last component of run.dir.");
  s.Int("run.seed", 1, "Seed for every random choice of the run.", 0);
}

void DeclareProcess(ConfigSchema& s) {
  s.Int("process.rank", 0,
        "Index of this process among the processes of its kind (set by the "
        "launcher); it tags log lines and metrics.",
        0);
  s.Duration("process.shutdown_grace", absl::Seconds(30),
             "After SIGINT or SIGTERM, how long in-flight work may take to finish "
             "before the process exits anyway.");
}

void DeclareLog(ConfigSchema& s) {
  s.String("log.level", "info", "Lowest severity logged.",
           {"info", "warning", "error"});
  s.Int("log.verbosity", 0, "VLOG(n) lines with n <= verbosity are logged.", 0, 9);
}

void DeclareMetrics(ConfigSchema& s) {
  s.Bool("metrics.enabled", true, "Serve Prometheus metrics at /metrics.");
  s.String("metrics.host", "127.0.0.1",
           "Address the metrics server binds; 0.0.0.0 lets a cluster's Prometheus "
           "scrape it.");
  s.Int("metrics.port", 0,
        "Port of the metrics server; 0 lets the OS choose. The address is written "
        "to run.dir/prometheus/<process>.json for file-based discovery.",
        0, 65535);
}

void DeclareSandbox(ConfigSchema& s) {
  s.String("sandbox.address", "",
           "Where nbrl-sandbox serves SandboxService: unix:PATH or HOST:PORT (port 0: "
           "the OS chooses). Empty: unix:<run.dir>/sandbox-<rank>.sock.");
  s.Int("sandbox.warm_sessions", 4, "Pre-started sessions kept ready in the pool.", 0, 1024);
  s.Int("sandbox.max_sessions", 64, "Open sessions accepted at once.", 1, 4096);
  s.Duration("sandbox.idle_timeout", absl::Minutes(10),
             "A session without an Execute for this long is closed (clients may ask "
             "for another value up to sandbox.max_idle_timeout).");
  s.Duration("sandbox.max_idle_timeout", absl::Hours(2), "Largest idle timeout a client may ask for.");
  s.Duration("sandbox.start_timeout", absl::Seconds(10),
             "Longest wait for a sandbox process to start.");
  s.Duration("sandbox.cell_timeout", absl::Seconds(30),
             "Default wall-clock limit of a cell; past it the cell is interrupted.");
  s.Duration("sandbox.max_cell_timeout", absl::Minutes(10),
             "Largest cell timeout a client may ask for.");
  s.Duration("sandbox.interrupt_grace", absl::Seconds(1),
             "After interrupting a timed-out cell, how long it may take to stop before "
             "its session is killed (and its state lost).");
  s.Int("sandbox.output_bytes", 16384, "Default budget of a cell's stdout and of its stderr.", 256);
  s.Int("sandbox.max_output_bytes", 1 << 20, "Largest output budget a client may ask for.", 256);
  s.Int("sandbox.max_code_bytes", 1 << 20, "Largest cell source accepted.", 1);
  s.String("sandbox.bwrap", "/usr/bin/bwrap", "The bubblewrap binary.");
  s.String("sandbox.python", "/usr/bin/python3",
           "Python inside the sandbox; must live under /usr, the only tree bound in.");
  s.Int("sandbox.workspace_bytes", 64 << 20, "Size cap of a session's writable /workspace.", 1 << 20);
  s.Int("sandbox.tmp_bytes", 16 << 20, "Size cap of a session's private /tmp.", 1 << 20);
  s.Int("sandbox.memory_bytes", int64_t{1} << 30,
        "Address-space limit (RLIMIT_AS) of each sandboxed process.", 64 << 20);
  s.Duration("sandbox.cpu_time", absl::Minutes(10),
             "CPU-time limit (RLIMIT_CPU) of a session's processes over its life.");
  s.Int("sandbox.max_processes", 64,
        "Processes and threads a session may have (RLIMIT_NPROC; per session when the "
        "worker runs as root, since each session gets its own uid).",
        4);
  s.Int("sandbox.max_open_files", 256, "Open files per sandboxed process (RLIMIT_NOFILE).", 16);
  s.Int("sandbox.max_file_bytes", 32 << 20, "Largest file a session may write (RLIMIT_FSIZE).", 4096);
  s.Int("sandbox.uid_base", 1000000,
        "When the worker runs as root, session n runs as uid/gid uid_base + n mod 60000.", 1000);
  s.Bool("sandbox.seccomp", true,
         "Refuse ptrace, mount, bpf, kexec, perf_event_open, keyctl and namespace calls "
         "in sessions. Turn off only to debug.");
  s.String("sandbox.tools.index", "",
           "Xapian index served to sessions as web_search/read_page (build it with "
           "`nbrl-sandbox index CORPUS.jsonl DIR`). Empty: no tools.");
  s.StringList("sandbox.tools.default", {"web_search", "read_page"},
               "Tools of a session that asks for none (those the index serves).");
  s.Duration("sandbox.tools.call_timeout", absl::Seconds(5), "Time limit of one tool call.");
  s.Int("sandbox.tools.max_calls_per_session", 200, "Tool calls a session may make.", 0);
  s.Int("sandbox.tools.page_chars", 8000, "Default length of a read_page result (chars).", 1);
}

ConfigSchema BuildSchema() {
  ConfigSchema s;
  DeclareRun(s);
  DeclareProcess(s);
  DeclareLog(s);
  DeclareMetrics(s);
  DeclareSandbox(s);
  return s;
}

}  // namespace

const ConfigSchema& NbrlConfigSchema() {
  static const ConfigSchema* schema = new ConfigSchema(BuildSchema());
  return *schema;
}

}  // namespace nbrl::common
