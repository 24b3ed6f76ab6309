#!/usr/bin/env bash
# quickstart.sh: train the embedded notebook agent on this machine's CPU and show
# that it learned. The first command to run on a fresh Debian 12 machine.
#
# Usage: deploy/quickstart.sh [--out DIR] [--seed N] [--small] [--skip-setup]
#                             [--build-dir DIR]
#
#   --out DIR        where everything goes (default runs/quickstart)
#   --seed N         training and evaluation seed (default 1); the task world's
#                    seed stays fixed, so runs with other seeds are measured on
#                    the same questions (use another --out for each seed)
#   --small          the CI-sized pipeline: a tiny world and model, a handful of
#                    SFT and RL steps, 6 evaluation questions (a few minutes)
#   --skip-setup     no deploy/setup.sh and no build: use the existing build
#   --build-dir DIR  the build tree (default build)
#   --help           this text
#
# Phases (each prints a header, its progress and its duration):
#   1 set-up       deploy/setup.sh, configure (Release, Ninja), build the binaries
#   2 world        nbrl world (fixed seed) and nbrl-sandbox index of its documents
#   3 model        the scripted expert's episodes on 300 training questions (nbrl
#                  eval --policy scripted; --small: 20), then
#                  nbrl init-model: a tokenizer trained on the training questions
#                  and those episodes, and a random Qwen2-shaped model
#   4 warm start   nbrl launch configs/quickstart-sft.yaml: SFT on scripted demos
#   5 eval before  nbrl eval of the newest SFT checkpoint on the test split
#   6 RL           nbrl launch configs/quickstart-rl.yaml from that checkpoint
#   7 eval after   nbrl eval of the RL checkpoint on the same questions, then
#     + report     nbrl report (DIR/report/report.md, report.json) and, with
#                  gnuplot, DIR/report/learning.png
#
# Re-running: a phase that completed leaves DIR/.done-<phase> with its inputs
# (seeds, sizes, steps, config hashes, the checkpoint it started from); a re-run
# reuses it when they match, and runs it and every later phase again when they do
# not. An interrupted warm start or RL phase resumes from its newest checkpoint.
# Ctrl-C stops a training phase in order (it leaves a checkpoint); run the same
# command again to continue. docs/quickstart.md explains every phase and output.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# --- Settings kept in one place -----------------------------------------------
WORLD_SEED=7           # the task world: the same questions for every --seed
EVAL_TEMPERATURE=0.5   # sampling temperature of both evaluations (RL samples at 0.5)
EVAL_SAMPLES=1         # rollouts per test question (pass@k with k = this)
EVAL_CONCURRENCY=8     # episodes at once
DEMO_NOISE=0.3         # the expert's fault rate in the tokenizer's demonstrations
# The full pipeline (the recipes in configs/ hold the training settings).
FULL_WORLD_ARGS=(--train 2000 --val 200 --test 200)
FULL_MODEL_ARGS=(--vocab 1024 --hidden 128 --layers 2 --heads 4 --kv-heads 2)
FULL_EVAL_LIMIT=0      # 0: the whole test split
FULL_DEMO_LIMIT=300    # training questions the tokenizer's expert episodes cover
FULL_SFT_OVERRIDES=()
FULL_RL_OVERRIDES=()
# --small: sized to finish in a few minutes on 2 cores (the CI test).
SMALL_WORLD_ARGS=(--people 20 --orgs 8 --cities 6 --works 8 --train 60 --val 6 --test 6)
SMALL_MODEL_ARGS=(--vocab 600 --hidden 32 --layers 1 --heads 4 --kv-heads 2
                  --positions 4096)
SMALL_EVAL_LIMIT=6
SMALL_DEMO_LIMIT=20
SMALL_SFT_OVERRIDES=(learner.max_steps=4 learner.checkpoint_every=2
                     learner.warmup_steps=1 learner.batch_groups=4 actor.group_size=1)
# The tiny model's groups mostly score alike; the full recipe's filter of such
# groups (uniform_group_keep 0) would leave it waiting for a batch.
SMALL_RL_OVERRIDES=(learner.max_steps=4 learner.checkpoint_every=2
                    learner.uniform_group_keep=1
                    actor.max_steps=4 actor.max_action_tokens=96
                    actor.context_tokens=2048)
# -------------------------------------------------------------------------------

repo=$(cd "$(dirname "$0")/.." && pwd)
out=runs/quickstart
seed=1
small=0
skip_setup=0
build=build
while [[ $# -gt 0 ]]; do
  case "$1" in
    --help | -h) usage; exit 0 ;;
    --out) out=${2:?--out needs a folder}; shift ;;
    --out=*) out=${1#*=} ;;
    --seed) seed=${2:?--seed needs a number}; shift ;;
    --seed=*) seed=${1#*=} ;;
    --small) small=1 ;;
    --skip-setup) skip_setup=1 ;;
    --build-dir) build=${2:?--build-dir needs a folder}; shift ;;
    --build-dir=*) build=${1#*=} ;;
    *) echo "quickstart: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "quickstart: --seed needs a whole number, got '$seed'" >&2; exit 2; }

# Relative --out and --build-dir are relative to where the script was started;
# the default output folder and build tree live in the repository.
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
if [[ "$out" == runs/quickstart ]]; then Q=$repo/runs/quickstart; else Q=$(absolute "$out"); fi
if [[ "$build" == build ]]; then B=$repo/build; else B=$(absolute "$build"); fi
cd "$repo"
mkdir -p "$Q/logs"
exec 9>"$Q/.lock"
flock -n 9 || { echo "quickstart: another quickstart is running in $Q" >&2; exit 1; }

if [[ $small == 1 ]]; then
  world_args=("${SMALL_WORLD_ARGS[@]}"); model_args=("${SMALL_MODEL_ARGS[@]}")
  eval_limit=$SMALL_EVAL_LIMIT; demo_limit=$SMALL_DEMO_LIMIT
  sft_overrides=("${SMALL_SFT_OVERRIDES[@]}"); rl_overrides=("${SMALL_RL_OVERRIDES[@]}")
else
  world_args=("${FULL_WORLD_ARGS[@]}"); model_args=("${FULL_MODEL_ARGS[@]}")
  eval_limit=$FULL_EVAL_LIMIT; demo_limit=$FULL_DEMO_LIMIT
  sft_overrides=("${FULL_SFT_OVERRIDES[@]+"${FULL_SFT_OVERRIDES[@]}"}")
  rl_overrides=("${FULL_RL_OVERRIDES[@]+"${FULL_RL_OVERRIDES[@]}"}")
fi
NBRL=$B/cli/nbrl
SANDBOX=$B/sandbox_worker/nbrl-sandbox

# --- Output, timing, failure ---------------------------------------------------
tty=0; [[ -t 1 ]] && tty=1
bold() { if [[ $tty == 1 ]]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
now() { date +%s.%N; }
duration() {  # seconds (float) -> "4.2 s" or "3 min 05 s"
  awk -v s="$1" 'BEGIN { if (s < 60) printf "%.1f s", s;
    else printf "%d min %02d s", int(s / 60), int(s) % 60 }'
}
t_start=$(now)
phase_name=""; phase_log=""; phase_t0=0
timings=()
begin() {  # begin NUMBER NAME DESCRIPTION
  phase_name=$2; phase_log=""; phase_t0=$(now)
  echo; bold "== [$1/7] $2: $3"
}
end() {
  local d; d=$(awk -v a="$phase_t0" -v b="$(now)" 'BEGIN { print b - a }')
  timings+=("$(printf '%-13s %s' "$phase_name" "$(duration "$d")")")
  bold "== $phase_name: done in $(duration "$d")"
}
fail() {
  echo >&2
  echo "quickstart: phase '$phase_name' failed: $*" >&2
  [[ -n "$phase_log" ]] && echo "quickstart: its log: $phase_log" >&2
  exit 1
}
# run LOG COMMAND...: the command's output goes to the terminal and to LOG.
run() {
  local log=$1; shift
  phase_log=$log
  echo "+ $*" >>"$log"
  "$@" 9>&- 2>&1 | tee -a "$log"
}

sandbox_pid=""
launch_pid=""
sock_dir=""
cleanup() {
  if [[ -n "$sandbox_pid" ]] && kill -0 "$sandbox_pid" 2>/dev/null; then
    kill -TERM "$sandbox_pid" 2>/dev/null || true
    wait "$sandbox_pid" 2>/dev/null || true
  fi
  sandbox_pid=""
  if [[ -n "$sock_dir" ]]; then rm -rf "$sock_dir"; fi
  sock_dir=""
}
# Ctrl-C reaches a running `nbrl launch` from the terminal by itself; SIGTERM is
# passed on. Either way the launcher stops its run in order (the learner writes
# a checkpoint) before the script exits.
interrupted() {
  if [[ -n "$launch_pid" ]]; then
    [[ $1 == TERM ]] && kill -TERM "$launch_pid" 2>/dev/null
    echo >&2
    echo "quickstart: waiting for the training run to stop (a checkpoint is written)" >&2
    wait "$launch_pid" 2>/dev/null || true
    launch_pid=""
  fi
  cleanup
  echo >&2
  echo "quickstart: interrupted in phase '$phase_name'; run the same command again" \
       "to continue (finished phases are reused, training resumes)" >&2
  if [[ $1 == INT ]]; then exit 130; else exit 143; fi
}
trap cleanup EXIT
trap 'interrupted INT' INT
trap 'interrupted TERM' TERM

# --- Stamps ----------------------------------------------------------------------
phases=(world model sft eval-sft rl eval-rl report)
stamp_file() { echo "$Q/.done-$1"; }
hash_of() { sha256sum | cut -c1-16; }
file_hash() { if [[ -f "$1" ]]; then sha256sum "$1" | cut -c1-16; else echo none; fi; }
# reusable PHASE INPUTS: true when PHASE completed with exactly these inputs.
reusable() { [[ -f "$(stamp_file "$1")" && "$(cat "$(stamp_file "$1")")" == "$2" ]]; }
# invalidate PHASE: PHASE and every later one will run again.
invalidate() {
  local found=0 p
  for p in "${phases[@]}"; do
    [[ "$p" == "$1" ]] && found=1
    [[ $found == 1 ]] && rm -f "$(stamp_file "$p")"
  done
  return 0
}
finish() { printf '%s\n' "$2" >"$(stamp_file "$1").tmp"; mv "$(stamp_file "$1").tmp" "$(stamp_file "$1")"; }
reuse() { echo "reusing $1 (inputs unchanged: $(stamp_file "$2"))"; }

# The resolved configuration of a launch phase without the source comments.
resolved() { "$NBRL" config --config "$@" | sed -e 's/  # .*$//'; }
# flat < RESOLVED: one "section.key: value" line per key.
flat() {
  awk '{ match($0, /^ */); depth = RLENGTH / 2; line = substr($0, RLENGTH + 1)
         key = line; sub(/:.*/, "", key); value = line; sub(/^[^:]*: ?/, "", value)
         path[depth] = key
         if (value == "") next  # a section
         name = path[0]; for (i = 1; i <= depth; i++) name = name "." path[i]
         print name ": " value }'
}
# settings < RESOLVED: the keys whose values differ from nbrl's defaults. The
# stamps hash these, so a newer nbrl that adds a key (at its default) reuses the
# finished phases; like a rebuilt nbrl, a changed default does not re-run them.
settings() {
  flat | grep -vxF -f <("$NBRL" config | sed -e 's/  # .*$//' | flat) || true
}
# config_value KEY < RESOLVED: one key (section.name) of a resolved config.
config_value() {
  flat | awk -v key="$1: " 'index($0, key) == 1 {
    value = substr($0, length(key) + 1); gsub(/"/, "", value); print value; exit }'
}
checkpoint() { printf '%s/checkpoints/step-%08d' "$1" "$2"; }

# === 1. set-up ===================================================================
begin 1 set-up "dependencies and the build"
if [[ $skip_setup == 1 ]]; then
  echo "skipped (--skip-setup): using the build in $B"
else
  run "$Q/logs/setup.log" bash deploy/setup.sh || fail "deploy/setup.sh failed"
  if [[ ! -f "$B/CMakeCache.txt" ]]; then
    generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
    run "$Q/logs/setup.log" cmake -S . -B "$B" "${generator[@]}" \
      -DCMAKE_BUILD_TYPE=Release || fail "cmake could not configure $B"
  else
    echo "configured already ($B/CMakeCache.txt)"
  fi
  run "$Q/logs/setup.log" cmake --build "$B" -j"$(nproc)" --target nbrl nbrl-sandbox \
    nbrl-learner nbrl-actor || fail "the build failed"
fi
for bin in cli/nbrl sandbox_worker/nbrl-sandbox learner/nbrl-learner actor/nbrl-actor; do
  [[ -x "$B/$bin" ]] || fail "$B/$bin is missing: build it (drop --skip-setup, or" \
    "cmake --build $B --target nbrl nbrl-sandbox nbrl-learner nbrl-actor)"
done
end

# The two recipes, resolved with this run's paths and seed: checked before any
# work, and their hashes go into the stamps of the training phases.
phase_name=configuration
steps_of() {  # steps_of RESOLVED RECIPE: its learner.max_steps, which must be set
  local steps; steps=$(config_value learner.max_steps <<<"$1")
  [[ "$steps" =~ ^[1-9][0-9]*$ ]] || fail "learner.max_steps must be set in $2 (got '$steps')"
  echo "$steps"
}
sft_args=(configs/quickstart-sft.yaml "run.dir=$Q/sft" "model.path=$Q/model0"
          "actor.data=$Q/world/train.jsonl" "sandbox.tools.index=$Q/world/index"
          "run.seed=$seed" "${sft_overrides[@]+"${sft_overrides[@]}"}")
sft_conf=$(resolved "${sft_args[@]}") || fail "configs/quickstart-sft.yaml is invalid"
sft_steps=$(steps_of "$sft_conf" configs/quickstart-sft.yaml) || exit 1
sft_checkpoint=$(checkpoint "$Q/sft" "$sft_steps")
rl_args=(configs/quickstart-rl.yaml "run.dir=$Q/rl" "model.path=$sft_checkpoint"
         "actor.data=$Q/world/train.jsonl" "sandbox.tools.index=$Q/world/index"
         "run.seed=$seed" "${rl_overrides[@]+"${rl_overrides[@]}"}")
rl_conf=$(resolved "${rl_args[@]}") || fail "configs/quickstart-rl.yaml is invalid"
rl_steps=$(steps_of "$rl_conf" configs/quickstart-rl.yaml) || exit 1
rl_checkpoint=$(checkpoint "$Q/rl" "$rl_steps")
# The evaluations run episodes under the RL actors' limits: as many actions, as
# many tokens per action, the same end after malformed actions.
eval_max_steps=$(config_value actor.max_steps <<<"$rl_conf")
eval_max_action_tokens=$(config_value actor.max_action_tokens <<<"$rl_conf")
eval_max_format_errors=$(config_value actor.max_format_errors <<<"$rl_conf")

# === 2. world =====================================================================
begin 2 world "the task world (seed $WORLD_SEED) and its search index"
world_inputs="world_seed=$WORLD_SEED
world_args=${world_args[*]}"
if reusable world "$world_inputs"; then
  reuse "$Q/world" world
else
  invalidate world
  rm -rf "$Q/world"
  log=$Q/logs/world.log; : >"$log"
  run "$log" "$NBRL" world --out "$Q/world" --seed "$WORLD_SEED" "${world_args[@]}" ||
    fail "nbrl world failed"
  run "$log" "$SANDBOX" index "$Q/world/corpus.jsonl" "$Q/world/index" \
    "run.dir=$Q/world" metrics.enabled=false || fail "nbrl-sandbox index failed"
  finish world "$world_inputs"
fi
end

# The tokenizer's demonstrations and the evaluations share one sandbox worker,
# started when the first of them needs it.
sock=$Q/eval-sandbox.sock
if [[ ${#sock} -gt 100 ]]; then  # a unix socket path must fit 108 bytes
  sock_dir=$(mktemp -d /tmp/nbrl-quickstart.XXXXXX); sock=$sock_dir/sb.sock
fi
start_sandbox() {
  [[ -n "$sandbox_pid" ]] && return 0
  local log=$Q/logs/eval-sandbox.log
  rm -f "$sock"
  "$SANDBOX" serve "sandbox.address=unix:$sock" "sandbox.tools.index=$Q/world/index" \
    "run.dir=$Q/eval-sandbox" >"$log" 2>&1 9>&- &
  sandbox_pid=$!
  local i
  for ((i = 0; i < 600; i++)); do
    grep -q '^ready' "$log" 2>/dev/null && { echo "sandbox worker ready on unix:$sock"; return 0; }
    kill -0 "$sandbox_pid" 2>/dev/null || { phase_log=$log; fail "nbrl-sandbox serve exited"; }
    sleep 0.2
  done
  phase_log=$log
  fail "nbrl-sandbox serve did not get ready in 2 minutes"
}
# === 3. model =====================================================================
begin 3 model "a tokenizer trained on the training questions and the expert's episodes, and a random model (${model_args[*]})"
model_inputs="world=$(file_hash "$(stamp_file world)")
model_args=${model_args[*]}
tokenizer_text=train.jsonl,episodes.jsonl
demos=$demo_limit noise=$DEMO_NOISE
seed=$seed"
if reusable model "$model_inputs"; then
  reuse "$Q/model0" model
else
  invalidate model
  rm -rf "$Q/model0" "$Q/demos"
  log=$Q/logs/model.log; : >"$log"
  # The tokenizer learns from the texts the model trains on: the training
  # questions and the scripted expert's episodes on the first of them (system
  # prompt, code, outputs, Notepads). Not from the documents: a held-out entity's
  # name would become tokens that no training text contains, whose embeddings
  # stay random, and the model would fail on the test questions for that alone.
  # A first tokenizer, trained on the world, only serves to run those episodes.
  run "$log" "$NBRL" init-model --out "$Q/demos/bootstrap" \
    --text "$Q/world/corpus.jsonl,$Q/world/train.jsonl" "${model_args[@]}" \
    --seed "$seed" || fail "nbrl init-model (the bootstrap tokenizer) failed"
  start_sandbox
  run "$log" "$NBRL" eval --policy scripted --tokenizer "$Q/demos/bootstrap" \
    --data "$Q/world/train.jsonl" --limit "$demo_limit" --noise "$DEMO_NOISE" \
    --sandbox "unix:$sock" --out "$Q/demos" --seed "$seed" ||
    fail "nbrl eval of the scripted expert failed"
  run "$log" "$NBRL" init-model --out "$Q/model0" \
    --text "$Q/world/train.jsonl,$Q/demos/episodes.jsonl" \
    "${model_args[@]}" --seed "$seed" || fail "nbrl init-model failed"
  finish model "$model_inputs"
fi
end

# A training phase: `nbrl launch` to learner.max_steps (STEPS) in RUN_DIR.
# train PHASE RUN_DIR STEPS INPUTS CONFIG-ARGS...
train() {
  local phase=$1 dir=$2 steps=$3 inputs=$4; shift 4
  invalidate "$phase"
  if [[ -f "$Q/.started-$phase" && "$(cat "$Q/.started-$phase")" == "$inputs" &&
        -d "$dir" ]]; then
    if [[ -f "$(checkpoint "$dir" "$steps")/manifest.json" ]]; then
      echo "the interrupted run in $dir had reached learner.max_steps=$steps"
      rm -f "$Q/.started-$phase"
      finish "$phase" "$inputs"
      return 0
    fi
    echo "resuming the interrupted run in $dir from its newest checkpoint"
  else
    rm -rf "$dir"
    printf '%s\n' "$inputs" >"$Q/.started-$phase"
  fi
  phase_log=$dir/logs/learner-0.log
  echo "+ nbrl launch --config $*"
  # In the background, so that the trap above can pass SIGTERM on while it runs.
  "$NBRL" launch --config "$@" 9>&- &
  launch_pid=$!
  local rc=0
  wait "$launch_pid" || rc=$?
  launch_pid=""
  [[ $rc == 0 ]] || fail "nbrl launch exited $rc (every process's log is in $dir/logs/)"
  [[ -f "$(checkpoint "$dir" "$steps")/manifest.json" ]] ||
    fail "the run ended before learner.max_steps=$steps (no $(checkpoint "$dir" "$steps"))"
  rm -f "$Q/.started-$phase"
  finish "$phase" "$inputs"
}

# === 4. warm start ================================================================
begin 4 "warm start" "SFT on the scripted expert's demonstrations"
sft_inputs="model=$(file_hash "$(stamp_file model)")
seed=$seed
steps=$sft_steps
overrides=${sft_overrides[*]+"${sft_overrides[*]}"}
config=$(settings <<<"$sft_conf" | hash_of)"
if reusable sft "$sft_inputs"; then
  reuse "$Q/sft" sft
else
  train sft "$Q/sft" "$sft_steps" "$sft_inputs" "${sft_args[@]}"
fi
end

eval_flags=(--data "$Q/world/test.jsonl" --temperature "$EVAL_TEMPERATURE"
            --samples "$EVAL_SAMPLES" --concurrency "$EVAL_CONCURRENCY"
            --max-steps "$eval_max_steps" --max-action-tokens "$eval_max_action_tokens"
            --max-format-errors "$eval_max_format_errors" --seed "$seed")
[[ "$eval_limit" != 0 ]] && eval_flags+=(--limit "$eval_limit")
# evaluate PHASE POLICY_DIR OUT_DIR
evaluate() {
  local phase=$1 policy=$2 dir=$3
  local inputs="policy=$policy
policy_manifest=$(file_hash "$policy/manifest.json")
flags=${eval_flags[*]}"
  if reusable "$phase" "$inputs"; then
    reuse "$dir" "$phase"
    return 0
  fi
  invalidate "$phase"
  rm -rf "$dir"
  start_sandbox
  local log=$Q/logs/$phase.log; : >"$log"
  run "$log" "$NBRL" eval --policy "$policy" --sandbox "unix:$sock" --out "$dir" \
    "${eval_flags[@]}" || fail "nbrl eval failed"
  finish "$phase" "$inputs"
}

# === 5. eval before ================================================================
begin 5 "eval before" "the warm start on the test split ($(basename "$sft_checkpoint"))"
evaluate eval-sft "$sft_checkpoint" "$Q/eval-sft"
end

# === 6. RL ===========================================================================
begin 6 RL "reinforcement learning from the warm start"
rl_inputs="sft_checkpoint=$(file_hash "$sft_checkpoint/manifest.json")
seed=$seed
steps=$rl_steps
overrides=${rl_overrides[*]+"${rl_overrides[*]}"}
config=$(settings <<<"$rl_conf" | hash_of)"
if reusable rl "$rl_inputs"; then
  reuse "$Q/rl" rl
else
  train rl "$Q/rl" "$rl_steps" "$rl_inputs" "${rl_args[@]}"
fi
end

# The plot: reward and EM of the training batches against the learner step, with
# the evaluations' EM before and after RL as horizontal lines. Kept beside the
# picture, so `cd DIR/report && gnuplot -e "em_before=..; em_after=..; seed=.."
# learning.gp` draws it again.
write_plot_script() {
  cat >"$1" <<'EOF'
# Draws learning.png from curve.tsv (nbrl report --steps); em_before, em_after
# and seed are given with -e.
set terminal png size 960,540
set output 'learning.png'
set datafile separator tab
set title sprintf("nbrl quickstart: RL from the warm start (seed %d)", seed)
set xlabel 'learner step'
set ylabel 'mean over the step''s training batch'
set grid
set key outside bottom center horizontal
set style textbox opaque noborder
min(a, b) = a < b ? a : b
max(a, b) = a > b ? a : b
stats 'curve.tsv' using 2:3 nooutput
lo = min(0, min(STATS_min_x, STATS_min_y))
hi = max(1, max(STATS_max_x, STATS_max_y))
set yrange [lo : hi + 0.08 * (hi - lo)]
set xrange [0 : *]
if (STATS_records < 12) set xtics 1
set arrow 1 from graph 0, first em_before to graph 1, first em_before nohead dt 2 lw 2 lc rgb '#555555'
set label 1 sprintf("warm-start EM %.3f (eval)", em_before) at graph 0.01, first em_before offset 0, 0.7 tc rgb '#555555' boxed front
set arrow 2 from graph 0, first em_after to graph 1, first em_after nohead dt 3 lw 2 lc rgb '#1b7837'
set label 2 sprintf("after RL EM %.3f (eval)", em_after) at graph 0.99, first em_after right offset 0, 0.7 tc rgb '#1b7837' boxed front
# With enough steps, a smoothed reward line shows the trend through the noise.
trend = STATS_records >= 12 ? ", '' using 1:2 smooth bezier lw 3 lc rgb '#2166ac' title 'reward (trend)'" : ""
plot 'curve.tsv' using 1:2 with linespoints pt 7 ps 0.6 lc rgb '#92c5de' title 'reward (training)', \
     '' using 1:3 with linespoints pt 7 ps 0.6 lc rgb '#b2182b' title 'EM (training)' @trend
EOF
}

# === 7. eval after, report ==========================================================
begin 7 "eval after, report" "the RL policy on the same questions, and the comparison"
evaluate eval-rl "$rl_checkpoint" "$Q/eval-rl"
cleanup
R=$Q/report
have_gnuplot=no; command -v gnuplot >/dev/null && have_gnuplot=yes
report_inputs="before=$(file_hash "$Q/eval-sft/summary.json")
after=$(file_hash "$Q/eval-rl/summary.json")
steps=$(file_hash "$Q/rl/steps/rank-0.jsonl")
gnuplot=$have_gnuplot"
if reusable report "$report_inputs"; then
  reuse "$R" report
else
  invalidate report
  rm -rf "$R"; mkdir -p "$R"
  log=$Q/logs/report.log; : >"$log"; phase_log=$log
  "$NBRL" report --before "$Q/eval-sft" --after "$Q/eval-rl" \
    --steps "$Q/rl/steps/rank-0.jsonl" --out "$R" --label-before warm-start \
    --label-after RL >"$R/table.txt" 2>>"$log" || { cat "$log" >&2; fail "nbrl report failed"; }
  if [[ $have_gnuplot == yes ]]; then
    read -r em_before em_after < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["before"]["em"]["mean"], r["after"]["em"]["mean"])' "$R/report.json") ||
      fail "cannot read the EM values from $R/report.json"
    write_plot_script "$R/learning.gp"
    (cd "$R" && gnuplot -e "em_before=$em_before; em_after=$em_after; seed=$seed" \
      learning.gp) >>"$log" 2>&1 || fail "gnuplot could not draw learning.png"
  else
    echo "gnuplot is not installed (Debian: gnuplot-nox): no learning.png;" \
         "the curve is in $R/curve.tsv"
  fi
  finish report "$report_inputs"
fi
end

echo
cat "$R/table.txt"
echo
t_total=$(awk -v a="$t_start" -v b="$(now)" 'BEGIN { print b - a }')
bold "quickstart: done in $(duration "$t_total")"
printf '  %s\n' "${timings[@]}"
echo "report: $R/report.md"
if [[ -f "$R/learning.png" ]]; then echo "plot:   $R/learning.png"; fi
