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

void DeclareAuth(ConfigSchema& s) {
  s.String("auth.token_file", "",
           "File holding the run's shared token (deploy/make-certs.sh makes one). "
           "Clients send it with every call; servers refuse calls without it. Empty: "
           "no token.");
  s.String("auth.tls_cert", "",
           "This process's certificate (PEM): servers on TCP serve TLS with it, "
           "clients present it for mutual TLS. Needs auth.tls_key. Empty: servers "
           "serve plaintext.");
  s.String("auth.tls_key", "", "The private key (PEM, unencrypted) of auth.tls_cert.");
  s.String("auth.tls_ca", "",
           "CA bundle (PEM) that verifies peers. On a server it makes client "
           "certificates required (mutual TLS); on a client it verifies the server "
           "and turns TLS on.");
  s.String("auth.tls_server_name", "",
           "Name the server's certificate must carry, instead of the host clients "
           "connect to (e.g. when connecting by an IP address it does not list).");
}

void DeclareSandbox(ConfigSchema& s) {
  s.String("sandbox.address", "",
           "Where nbrl-sandbox serves SandboxService: unix:PATH or HOST:PORT (port 0: "
           "the OS chooses). Empty: unix:<run.dir>/sandbox-<rank>.sock.");
  s.Int("sandbox.warm_sessions", 4, "Pre-started sessions kept ready in the pool.", 0,
        1024);
  s.Int("sandbox.max_sessions", 64, "Open sessions accepted at once.", 1, 4096);
  s.Duration("sandbox.idle_timeout", absl::Minutes(10),
             "A session without an Execute for this long is closed (clients may ask "
             "for another value up to sandbox.max_idle_timeout).");
  s.Duration("sandbox.max_idle_timeout", absl::Hours(2),
             "Largest idle timeout a client may ask for.");
  s.Duration("sandbox.start_timeout", absl::Seconds(10),
             "Longest wait for a sandbox process to start.");
  s.Duration("sandbox.cell_timeout", absl::Seconds(30),
             "Default wall-clock limit of a cell; past it the cell is interrupted.");
  s.Duration("sandbox.max_cell_timeout", absl::Minutes(10),
             "Largest cell timeout a client may ask for.");
  s.Duration("sandbox.interrupt_grace", absl::Seconds(1),
             "After interrupting a timed-out cell, how long it may take to stop before "
             "its session is killed (and its state lost).");
  s.Int("sandbox.output_bytes", 16384,
        "Default budget of a cell's stdout and of its stderr.", 256);
  s.Int("sandbox.max_output_bytes", 1 << 20,
        "Largest output budget a client may ask for.", 256);
  s.Int("sandbox.max_code_bytes", 1 << 20, "Largest cell source accepted.", 1);
  s.String("sandbox.bwrap", "/usr/bin/bwrap", "The bubblewrap binary.");
  s.String("sandbox.python", "/usr/bin/python3",
           "Python inside the sandbox; must live under /usr, the only tree bound in.");
  s.Int("sandbox.workspace_bytes", 64 << 20,
        "Size cap of a session's writable /workspace.", 1 << 20);
  s.Int("sandbox.tmp_bytes", 16 << 20, "Size cap of a session's private /tmp.",
        1 << 20);
  s.Int("sandbox.memory_bytes", int64_t{1} << 30,
        "Address-space limit (RLIMIT_AS) of each sandboxed process.", 64 << 20);
  s.Duration("sandbox.cpu_time", absl::Minutes(10),
             "CPU-time limit (RLIMIT_CPU) of a session's processes over its life.");
  s.Int("sandbox.max_processes", 64,
        "Processes and threads a session may have (RLIMIT_NPROC; per session when the "
        "worker runs as root, since each session gets its own uid).",
        4);
  s.Int("sandbox.max_open_files", 256,
        "Open files per sandboxed process (RLIMIT_NOFILE).", 16);
  s.Int("sandbox.max_file_bytes", 32 << 20,
        "Largest file a session may write (RLIMIT_FSIZE).", 4096);
  s.Int(
      "sandbox.uid_base", 1000000,
      "When the worker runs as root, session n runs as uid/gid uid_base + n mod 60000.",
      1000);
  s.Bool(
      "sandbox.seccomp", true,
      "Refuse ptrace, mount, bpf, kexec, perf_event_open, keyctl and namespace calls "
      "in sessions. Turn off only to debug.");
  s.String("sandbox.tools.index", "",
           "Xapian index served to sessions as web_search/read_page (build it with "
           "`nbrl-sandbox index CORPUS.jsonl DIR`). Empty: no tools.");
  s.StringList("sandbox.tools.default", {"web_search", "read_page"},
               "Tools of a session that asks for none (those the index serves).");
  s.Duration("sandbox.tools.call_timeout", absl::Seconds(5),
             "Time limit of one tool call.");
  s.Int("sandbox.tools.max_calls_per_session", 200, "Tool calls a session may make.",
        0);
  s.Int("sandbox.tools.page_chars", 8000,
        "Default length of a read_page result (chars).", 1);
}

void DeclareModel(ConfigSchema& s) {
  s.String(
      "model.path", "",
      "Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json) "
      "the learner trains and actors sample from.");
}

void DeclareLearner(ConfigSchema& s) {
  s.String("learner.address", "127.0.0.1:0",
           "Where nbrl-learner serves LearnerService (host:port; port 0: the OS "
           "chooses and the learner prints it).");
  s.String("learner.mode", "rl", "rl: the policy-gradient loss; sft: cross-entropy.",
           {"rl", "sft"});
  s.Int("learner.batch_groups", 4, "Trajectory groups per optimizer step (this rank).",
        1);
  s.Int("learner.max_steps", 0,
        "Stop after this many optimizer steps (0: run until stopped).", 0);
  s.Int("learner.queue_groups", 64, "Accepted groups waiting for training, at most.",
        1);
  s.Int("learner.max_staleness", 4,
        "Groups older than this many policy versions are dropped (0: on-policy).", 0);
  s.Double("learner.uniform_group_keep", 1.0,
           "Probability of keeping a group whose rollouts all have the same reward.",
           0.0, 1.0);
  s.String("learner.advantage", "reinforce++", "Advantage estimator.",
           {"reinforce++", "grpo"});
  s.Double("learner.gamma", 0.95, "Discount between steps (reinforce++).", 0.0, 1.0);
  s.Bool("learner.grpo_std", true,
         "grpo: divide each group's rewards minus their mean by the group's standard "
         "deviation (false: the plain differences, so a group whose rewards differ "
         "by little moves the policy little).");
  s.Double("learner.negative_advantage_scale", 1.0,
           "Factor on negative advantages, after the estimator (1: the plain "
           "estimator; below 1 the update leans on the rollouts that beat their "
           "baseline; docs/algorithm.md has what it did on the quickstart).",
           0.0, 1.0);
  s.Double("learner.lr", 1e-6, "AdamW learning rate.", 0.0);
  s.Double("learner.weight_decay", 0.0, "AdamW weight decay.", 0.0);
  s.Int("learner.warmup_steps", 0, "Linear learning-rate warm-up.", 0);
  s.String("learner.schedule", "constant",
           "Learning rate after the warm-up: constant, or cosine decay to 10% of lr "
           "at learner.max_steps.",
           {"constant", "cosine"});
  s.Double("learner.max_grad_norm", 1.0, "Gradient clipping (0: off).", 0.0);
  s.Double("learner.clip_low", 0.2, "Lower PPO clip (1 - clip_low).", 0.0, 0.99);
  s.Double("learner.clip_high", 0.28, "Upper PPO clip (1 + clip_high).", 0.0);
  s.Double("learner.dual_clip", 3.0,
           "Dual-clip constant for negative advantages (0: off).", 0.0);
  s.String("learner.aggregation", "token-mean", "Loss aggregation.",
           {"token-mean", "action-mean"});
  s.Int("learner.threads", 0,
        "CPU threads of the learner's model math (libtorch and OpenBLAS); 0: the "
        "libraries' defaults.",
        0);
  s.Int("learner.microbatch_tokens", 8192, "Padded tokens per forward/backward pass.",
        1);
  s.Int("learner.world_size", 1, "Learner ranks (data parallel).", 1);
  s.String("learner.store_address", "127.0.0.1:29500",
           "Rank 0's c10d store (host:port) where the ranks meet.");
  s.Int("learner.chunk_bytes", 1 << 20, "Data bytes per weight chunk.", 1024);
  s.Bool("learner.sync", false,
         "Synchronous (on-policy) training: each actor batch waits for the weights "
         "the previous one trained, and no stale group is accepted. Set batch_groups "
         "to the groups all actors make per batch (divided by world_size).");
  s.Double("learner.kl_coef", 0.0,
           "Weight of the k3 KL penalty to a frozen reference model (0: none).", 0.0);
  s.String("learner.reference", "",
           "The reference model's checkpoint folder (empty: model.path).");
  s.Double("learner.entropy_coef", 0.0, "Entropy bonus weight.", 0.0);
  s.String(
      "learner.checkpoint_dir", "",
      "Where checkpoints and the group journal go (empty: <run.dir>/checkpoints).");
  s.Int("learner.checkpoint_every", 20,
        "Write a checkpoint every this many steps (0: only when the run ends).", 0);
  s.Int("learner.keep_checkpoints", 3, "Checkpoints kept (the newest).", 1);
  s.String("learner.resume", "auto",
           "auto: continue from the newest valid checkpoint and replay the journal "
           "when there is one; never: start from model.path, discarding the journal.",
           {"auto", "never"});
  s.Duration(
      "learner.shutdown_grace", absl::Minutes(10),
      "After SIGINT or SIGTERM, how long the learner may take to finish its step "
      "and write the final checkpoint (process.shutdown_grace for the others).");
  s.Bool("learner.journal_sync", true,
         "fdatasync each accepted group before acknowledging it (survives a machine "
         "crash, not only a process crash).");
}

void DeclareActor(ConfigSchema& s) {
  s.String("actor.id", "", "Stable id of this actor slot; empty: actor-<rank>.");
  s.String("actor.learner", "", "The learner rank's address (host:port).");
  s.String("actor.sandbox", "",
           "The sandbox worker's address (unix:PATH or host:port).");
  s.String("actor.data", "", "Training questions (nbrl JSONL).");
  s.String("actor.family", "qa_search", "Task family of the data.",
           {"qa_search", "math", "code", "minimal"});
  s.Int("actor.shards", 1,
        "Actors sharing the data; this one takes shard process.rank.", 1);
  s.Int("actor.group_size", 4, "Rollouts per question (a group).", 1);
  s.Int("actor.groups_per_batch", 2,
        "Groups generated together (episodes = group_size x this).", 1);
  s.Int("actor.max_groups", 0,
        "Stop after sending this many groups (0: until stopped).", 0);
  s.Int("actor.max_steps", 8, "Actions per episode.", 1);
  s.Int("actor.context_tokens", 4096, "Context budget of an episode, in tokens.", 64);
  s.Int("actor.max_action_tokens", 512, "Tokens one action may take.", 8);
  s.Int("actor.max_format_errors", 3,
        "End an episode after this many malformed actions in a row (1: at the first; "
        "a rambling sample then costs one action, not max_steps).",
        1);
  s.Double("actor.temperature", 1.0,
           "Sampling temperature (0: greedy). In RL the learner divides the logits by "
           "the same value, so it scores the distribution the actions came from.",
           0.0);
  s.String("actor.policy", "model",
           "model: sample from the policy the learner trains; scripted: the task "
           "world's expert writes demonstrations (for learner.mode=sft warm starts; "
           "an example without a plan gets one action that submits its gold answer).",
           {"model", "scripted"});
  s.Double("actor.noise", 0.0,
           "Scripted expert only: probability that an episode has one fault.", 0.0,
           1.0);
  s.StringList("actor.noise_faults", {"field", "check", "copy"},
               "Scripted expert only: the faults a faulty episode draws from, "
               "uniformly: field (a wrong field in the last hop), check (the last "
               "hop takes the first search hit unchecked), copy (the submitted "
               "answer's last character is wrong).");
  s.Duration("actor.cell_timeout", absl::Seconds(10), "Wall-clock limit of one cell.");
  // The reward of an episode (agent/rewards.h, docs/algorithm.md): weighted
  // components; the answer's on the last action, format and execution per action.
  s.Double("actor.reward.em", 1.0, "Weight of the final answer's exact match (0/1).",
           0.0);
  s.Double("actor.reward.f1", 0.0, "Weight of the final answer's token F1.", 0.0);
  s.Double("actor.reward.has_answer", 0.0, "Weight of submitting any answer.", 0.0);
  s.Double("actor.reward.format", 0.1,
           "Weight of well-formed actions (the fraction of the episode's actions).",
           0.0);
  s.Double("actor.reward.execution", 0.1,
           "Weight of cells that ran without an exception or timeout (the fraction of "
           "the episode's actions).",
           0.0);
  s.Int("actor.threads", 0,
        "CPU threads of the actor's model math (libtorch and OpenBLAS); 0: the "
        "libraries' defaults (OpenBLAS: one per CPU). Actors sharing a CPU-only "
        "machine run best with cores / actors each.",
        0);
}

void DeclareLaunch(ConfigSchema& s) {
  s.Int("launch.actors", 2, "Actors `nbrl launch` starts on this node.", 1);
  s.Int("launch.sandboxes", 1, "Sandbox workers `nbrl launch` starts on this node.", 1);
  s.String("launch.bin_dir", "",
           "Where nbrl-sandbox, nbrl-learner and nbrl-actor are (a build tree or a "
           "bin folder); empty: next to the nbrl binary.");
  s.Duration("launch.max_backoff", absl::Seconds(30),
             "Longest wait before restarting a crashed actor or sandbox worker (the "
             "wait doubles from 1 s).");
  s.StringList("launch.roles", {"sandbox", "learner", "actor"},
               "Processes `nbrl launch` runs on this node: any of sandbox, learner, "
               "actor. A multi-node run has the learner on one node and sandbox + "
               "actor on every node.");
  s.Int("launch.nodes", 1, "Nodes in the run (one `nbrl launch` per node).", 1);
  s.Int("launch.node", 0,
        "This node's index, from 0: its actors are the global actors "
        "node*launch.actors onwards, and actor.shards is nodes*launch.actors.",
        0);
  s.Int("launch.learner_port", 0,
        "0: the launcher picks free ports (one node). N: learner rank r listens on "
        "port N+r, learner.store_address is used as given, and actors connect to "
        "launch.learner_host:N+r (several nodes).",
        0, 65535);
  s.String("launch.learner_host", "",
           "The host actors connect to for the learner; empty: the host of "
           "learner.address.");
}

ConfigSchema BuildSchema() {
  ConfigSchema s;
  DeclareRun(s);
  DeclareProcess(s);
  DeclareLog(s);
  DeclareMetrics(s);
  DeclareAuth(s);
  DeclareSandbox(s);
  DeclareModel(s);
  DeclareLearner(s);
  DeclareActor(s);
  DeclareLaunch(s);
  return s;
}

}  // namespace

const ConfigSchema& NbrlConfigSchema() {
  static const ConfigSchema* schema = new ConfigSchema(BuildSchema());
  return *schema;
}

}  // namespace nbrl::common
