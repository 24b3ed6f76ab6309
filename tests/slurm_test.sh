#!/bin/bash
# deploy/slurm/nbrl.sbatch on a real, throwaway Slurm cluster on this machine.
#
# Usage: tests/slurm_test.sh            (ctest -R slurm_test runs it)
#
# It starts munged, slurmctld and two slurmd daemons (nodes n0 and n1, both this
# machine, with their own ports), all with files in a temporary folder, makes a
# tiny run (task world, index, model) with the nbrl CLI, and submits the real
# sbatch script twice on both nodes:
#   1. learner.max_steps=2: the job must end COMPLETED with exit code 0, node 0
#      running sandbox+learner+actor and node 1 sandbox+actor, both nodes'
#      launchers exiting 0, the actors of both nodes registered with the learner
#      at the port the script gave (NBRL_PORT), the step log holding steps 1
#      and 2, and checkpoints/step-00000002 present;
#   2. the same command without a step limit, stopped with
#      `scancel --batch --signal=TERM` (what Slurm does before the time limit)
#      after two more steps: the job must resume from step 2, stop node 1 before
#      node 0, end COMPLETED, and leave a checkpoint at the step it stopped at.
#
# Environment:
#   NBRL_BINARY_DIR       the build tree with cli/nbrl, learner/nbrl-learner,
#                         actor/nbrl-actor, sandbox_worker/nbrl-sandbox (ctest sets
#                         it; default: <repo>/build). Build them first.
#   NBRL_SLURM_TEST_KEEP  1: keep the temporary folder (its path is printed);
#                         NBRL_KEEP_TEST_TMP=1 too. Otherwise it is removed at
#                         exit, also on failure (the logs' tails are printed).
#
# Exit status: 0 passed, 1 failed, 77 skipped (no Slurm or munge, not root, or
# the daemons cannot start here).
set -euo pipefail

readonly SKIP=77
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
build=${NBRL_BINARY_DIR:-$repo/build}
sbatch_script=$repo/deploy/slurm/nbrl.sbatch

say() { echo "slurm_test: $*"; }
skip() {
  say "SKIP: $*"
  exit "$SKIP"
}

for tool in munged slurmctld slurmd sbatch srun sinfo squeue scontrol scancel python3; do
  command -v "$tool" >/dev/null 2>&1 ||
    skip "$tool not found (install slurm-wlm, munge and python3: deploy/setup.sh)"
done
if [[ "$(id -u)" != 0 ]]; then
  skip "slurmd must run as root to start jobs (this runs as $(id -un))"
fi
for b in cli/nbrl learner/nbrl-learner actor/nbrl-actor sandbox_worker/nbrl-sandbox; do
  if [[ ! -x "$build/$b" ]]; then
    say "FAIL: $build/$b is missing; build first (cmake --build build)"
    exit 1
  fi
done
nbrl=$build/cli/nbrl

T=$(mktemp -d /tmp/nbrl-slurm-test.XXXXXX)
chmod 755 "$T" # munged wants its socket's folder searchable by all
export SLURM_CONF=$T/slurm.conf
daemon_pids=()

# Everything this test started: jobs, then daemons, then any process of its jobs
# left behind (they carry SLURM_CONF=<this folder>/slurm.conf in their
# environment).
cleanup() {
  set +e
  if [[ -n "${slurm_up:-}" ]]; then
    scancel --quiet --user=root >/dev/null 2>&1
    for _ in $(seq 20); do
      [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && break
      sleep 1
    done
  fi
  for pid in "${daemon_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${daemon_pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
  done
  local p
  for p in /proc/[0-9]*; do
    if grep -qsz "^SLURM_CONF=$T/slurm.conf$" "$p/environ" 2>/dev/null; then
      kill -KILL "${p#/proc/}" 2>/dev/null
    fi
  done
  if [[ "${NBRL_SLURM_TEST_KEEP:-0}" != 1 && "${NBRL_KEEP_TEST_TMP:-0}" != 1 ]]; then
    rm -rf "$T"
  else
    say "files kept in $T"
  fi
}
trap cleanup EXIT

# Prints the last lines of every log that can explain a failure.
show_logs() {
  local f
  for f in "$T"/job-*.out "$T"/run/logs/*.log "$T"/slurmctld.log "$T"/slurmd-*.log \
    "$T"/munged.log; do
    [[ -f "$f" ]] || continue
    echo "----- tail of $f"
    tail -n 40 "$f"
  done
}

fail() {
  say "FAIL: $*"
  show_logs
  exit 1
}

# n free TCP ports on 127.0.0.1 (the OS picks them; released at once).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# A port p with p and p+1 free (for the run's c10d store and learner rank 0).
free_port_pair() {
  python3 - <<'EOF'
import socket
for _ in range(100):
    a, b = socket.socket(), socket.socket()
    try:
        a.bind(("127.0.0.1", 0))
        p = a.getsockname()[1]
        b.bind(("127.0.0.1", p + 1))
        print(p)
        break
    except OSError:
        pass
    finally:
        a.close()
        b.close()
EOF
}

# --- munge --------------------------------------------------------------------
if command -v mungekey >/dev/null 2>&1; then
  mungekey --create --keyfile="$T/munge.key" >/dev/null 2>&1 ||
    skip "mungekey could not create a key"
else
  dd if=/dev/urandom of="$T/munge.key" bs=1024 count=1 status=none
fi
chmod 600 "$T/munge.key"
munged --foreground --socket="$T/munge.socket" --key-file="$T/munge.key" \
  --pid-file="$T/munged.pid" --log-file="$T/munged.log" \
  --seed-file="$T/munged.seed" >>"$T/munged.log" 2>&1 &
daemon_pids+=($!)
for _ in $(seq 50); do
  [[ -S "$T/munge.socket" ]] && break
  sleep 0.1
done
if ! munge -n -S "$T/munge.socket" 2>/dev/null | unmunge -S "$T/munge.socket" >/dev/null 2>&1; then
  tail -n 20 "$T/munged.log" 2>/dev/null
  skip "munged does not start here (log above)"
fi

# --- slurm.conf: nodes n0 and n1, both this machine ------------------------------
read -r ctld_port node0_port node1_port < <(free_ports 3)
host=$(hostname -s)
mkdir -p "$T/state" "$T/spool/n0" "$T/spool/n1"
cat >"$SLURM_CONF" <<EOF
ClusterName=nbrltest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$T/munge.socket
CredType=cred/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool/%n
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd-%n.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=600
KillWait=30
NodeName=n0 NodeHostname=$host NodeAddr=127.0.0.1 Port=$node0_port CPUs=$(nproc) RealMemory=1000
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$node1_port CPUs=$(nproc) RealMemory=1000
PartitionName=nbrl Nodes=n0,n1 Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -D -f "$SLURM_CONF" >"$T/slurmctld.out" 2>&1 &
daemon_pids+=($!)
for node in n0 n1; do
  slurmd -D -N "$node" -f "$SLURM_CONF" >"$T/slurmd-$node.out" 2>&1 &
  daemon_pids+=($!)
done
slurm_up=1
idle=""
for _ in $(seq 60); do
  idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | tr '\n' ' ')
  [[ "$idle" == "n0 n1 " ]] && break
  sleep 0.5
done
if [[ "$idle" != "n0 n1 " ]]; then
  for f in "$T"/slurmctld.out "$T"/slurmd-n0.out "$T"/slurmd-n1.out; do
    echo "----- tail of $f"
    tail -n 20 "$f"
  done
  sinfo -N 2>&1 || true
  skip "the Slurm daemons did not bring nodes n0 and n1 up (idle: '$idle'; logs above)"
fi
say "Slurm cluster up in $T (nodes n0, n1)"

# --- a tiny run --------------------------------------------------------------------
"$nbrl" world --out "$T/world" --seed 2 --train 20 --val 0 --test 0 --people 20 \
  --orgs 8 --cities 6 --works 8 >"$T/world.log" 2>&1 || {
  cat "$T/world.log"
  fail "nbrl world failed"
}
"$build/sandbox_worker/nbrl-sandbox" index "$T/world/corpus.jsonl" "$T/world/index" \
  "run.dir=$T/world" metrics.enabled=false >"$T/index.log" 2>&1 || {
  cat "$T/index.log"
  fail "nbrl-sandbox index failed"
}
"$nbrl" init-model --out "$T/model" --text "$T/world/corpus.jsonl" --vocab 600 \
  --hidden 32 --intermediate 64 --layers 1 --heads 4 --kv-heads 2 \
  --positions 4096 >"$T/model.log" 2>&1 || {
  cat "$T/model.log"
  fail "nbrl init-model failed"
}
cat >"$T/run.yaml" <<EOF
run:
  dir: $T/run
model:
  path: $T/model
sandbox:
  tools:
    index: $T/world/index
learner:
  batch_groups: 2
  lr: 0.001
  max_staleness: 100
  checkpoint_every: 2
actor:
  data: $T/world/train.jsonl
  group_size: 2
  groups_per_batch: 1
  max_steps: 2
  max_action_tokens: 32
  context_tokens: 2048
launch:
  actors: 1
EOF

# The sbatch command line both jobs use. Every server stays on loopback.
NBRL_BIN=$build
NBRL_PORT=$(free_port_pair)
[[ -n "$NBRL_PORT" ]] || fail "no two consecutive free ports on 127.0.0.1"
NBRL_PORT=$((NBRL_PORT + 1)) # learner rank 0; the store is on NBRL_PORT-1
export NBRL_BIN NBRL_PORT
submit() { # submit [--timeout S] [sbatch options] -- [key=value ...]
  local opts=() limit=()
  if [[ "$1" == --timeout ]]; then
    limit=(timeout "$2")
    shift 2
  fi
  while [[ "$1" != -- ]]; do
    opts+=("$1")
    shift
  done
  shift
  "${limit[@]}" sbatch --nodes=2 --chdir="$T" "${opts[@]}" "$sbatch_script" --config "$T/run.yaml" \
    learner.address=127.0.0.1:0 "$@"
}

steps_logged() {
  if [[ -f "$T/run/steps/rank-0.jsonl" ]]; then
    grep -c '"step"' "$T/run/steps/rank-0.jsonl" || true
  else
    echo 0
  fi
}

job_field() { # job_field ID NAME: NAME=value from scontrol show job
  scontrol show job "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | head -n 1 | cut -d= -f2
}

check_completed() { # check_completed ID
  local state code
  state=$(job_field "$1" JobState)
  code=$(job_field "$1" ExitCode)
  [[ "$state" == COMPLETED && "$code" == 0:0 ]] ||
    fail "job $1 ended $state with exit code $code, expected COMPLETED 0:0"
}

# --- job 1: two steps, the run ends by itself -------------------------------------
say "job 1: learner.max_steps=2 on 2 nodes"
started=$SECONDS
rc=0
submit --timeout 150 --wait --output="$T/job-1.out" -- learner.max_steps=2 \
  >"$T/sbatch-1.txt" 2>&1 || rc=$?
cat "$T/sbatch-1.txt"
job1=$(grep -o 'Submitted batch job [0-9]*' "$T/sbatch-1.txt" | grep -o '[0-9]*$' || true)
[[ -n "$job1" ]] || fail "sbatch did not submit job 1"
((rc != 124)) || fail "job 1 did not end within 150 s"
((rc == 0)) || fail "sbatch --wait exited with status $rc for job 1"
check_completed "$job1"
say "job 1 ($job1) COMPLETED in $((SECONDS - started)) s"
out=$(<"$T/job-1.out")
grep -q 'node 0 (n0): nbrl launch launch.node=0 launch.roles=\[sandbox,learner,actor\]' \
  <<<"$out" || fail "job 1: node 0 did not start sandbox, learner and actor"
grep -q 'node 1 (n1): nbrl launch launch.node=1 launch.roles=\[sandbox,actor\]' \
  <<<"$out" || fail "job 1: node 1 did not start sandbox and actor"
for node in 0 1; do
  grep -q "^$node: nbrl.sbatch: node $node: nbrl launch exited with status 0" <<<"$out" ||
    fail "job 1: nbrl launch on node $node did not exit with status 0"
done
grep -q 'run ended (status 0)' <<<"$out" || fail "job 1: no 'run ended (status 0)'"
[[ "$(steps_logged)" == 2 ]] || fail "job 1: $(steps_logged) steps logged, expected 2"
python3 - "$T/run/steps/rank-0.jsonl" <<'EOF' || fail "job 1: unexpected step log"
import json, sys
records = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps = [r["step"] for r in records]
assert steps == [1, 2], f"steps {steps}, expected [1, 2]"
EOF
[[ -f "$T/run/checkpoints/step-00000002/manifest.json" ]] ||
  fail "job 1: no checkpoints/step-00000002/manifest.json"
for name in sandbox-0 sandbox-1 learner-0 actor-0 actor-1; do
  [[ -s "$T/run/logs/$name.log" ]] || fail "job 1: no log for $name"
done
for name in actor-0 actor-1; do
  grep -q "registered with the learner at 127.0.0.1:$NBRL_PORT " "$T/run/logs/$name.log" ||
    fail "job 1: $name did not register with the learner at 127.0.0.1:$NBRL_PORT"
done

# --- job 2: resume, stopped on SIGTERM ---------------------------------------------
say "job 2: resume without a step limit, then scancel --batch --signal=TERM"
started=$SECONDS
job2=$(submit --parsable --output="$T/job-2.out" -- learner.max_steps=0) ||
  fail "sbatch did not submit job 2"
job2=${job2%%;*}
for _ in $(seq 300); do
  (($(steps_logged) >= 4)) && break
  [[ "$(job_field "$job2" JobState)" =~ ^(PENDING|RUNNING)$ ]] ||
    fail "job 2 ended ($(job_field "$job2" JobState)) before step 4"
  sleep 0.5
done
(($(steps_logged) >= 4)) || fail "job 2: no step 4 within 150 s"
scancel --batch --signal=TERM "$job2" || fail "scancel --batch --signal=TERM failed"
for _ in $(seq 240); do
  [[ "$(job_field "$job2" JobState)" =~ ^(PENDING|RUNNING|COMPLETING)$ ]] || break
  sleep 0.5
done
check_completed "$job2"
say "job 2 ($job2) COMPLETED in $((SECONDS - started)) s"
out=$(<"$T/job-2.out")
grep -q 'nbrl.sbatch: SIGTERM: stopping' <<<"$out" || fail "job 2: the script did not see SIGTERM"
grep -q 'stopped on SIGTERM (status 0)' <<<"$out" || fail "job 2: no 'stopped on SIGTERM (status 0)'"
order=$(grep -o '^[01]: nbrl.sbatch: node [01]: nbrl launch exited with status 0' <<<"$out" |
  cut -c1 | tr -d '\n')
[[ "$order" == 10 ]] ||
  fail "job 2: the launchers did not both exit 0, node 1 first (order '$order')"
stopped_at=$(steps_logged)
python3 - "$T/run/steps/rank-0.jsonl" <<'EOF' || fail "job 2: unexpected step log"
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1]) if l.strip()]
assert steps == list(range(1, len(steps) + 1)), f"steps {steps} are not 1..n"
EOF
ckpt=$(printf '%s/run/checkpoints/step-%08d/manifest.json' "$T" "$stopped_at")
[[ -f "$ckpt" ]] || fail "job 2: no checkpoint at the step it stopped at ($ckpt)"
grep -q 'at step 2; ' "$T/run/logs/learner-0.log" ||
  fail "job 2: the learner did not resume from step 2"
say "PASS: two jobs on two nodes; job 2 resumed at step 2 and stopped at step $stopped_at with a checkpoint"
