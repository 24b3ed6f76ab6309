#!/usr/bin/env bash
# quickstart_test.sh: deploy/quickstart.sh --small end to end, then again.
#
# Usage: NBRL_BINARY_DIR=build tests/quickstart_test.sh [--keep]
#
#   --keep   leave the temporary folder behind for a look (NBRL_KEEP_TEST_TMP=1 does
#            the same); otherwise it is removed at exit, also on failure
#
# Runs `deploy/quickstart.sh --small --skip-setup --build-dir $NBRL_BINARY_DIR`
# into a temporary folder and checks the artefact of every phase: the task world
# and its search index, model0, an SFT checkpoint with its manifest.json, the
# warm start's evaluation, an RL checkpoint, the RL evaluation, report.md with the
# table's rows, report.json with before / after / delta, curve.tsv, and
# learning.png (a PNG) when gnuplot is installed. Then runs it again: every phase
# must say it is reused and the run must take seconds. A removed stamp makes
# only its phase (the report) run again. Also validates the four recipes in
# configs/ with `nbrl config --config`. Run through ctest: `ctest -R quickstart_test`.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
fail() {
  echo "FAIL: $*" >&2
  [[ $keep == 1 ]] || echo "(--keep or NBRL_KEEP_TEST_TMP=1 keeps its files)" >&2
  exit 1
}

keep=0
if [[ "${NBRL_KEEP_TEST_TMP:-0}" == 1 ]]; then keep=1; fi
for arg in "$@"; do
  case "$arg" in
    --help | -h) usage; exit 0 ;;
    --keep) keep=1 ;;
    *) echo "quickstart_test.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
build=${NBRL_BINARY_DIR:-}
[[ -n "$build" && -x "$build/cli/nbrl" ]] ||
  { echo "quickstart_test.sh: set NBRL_BINARY_DIR to a build tree with cli/nbrl" >&2; exit 2; }
build=$(cd "$build" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
nbrl=$build/cli/nbrl

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nbrl-quickstart-test.XXXXXX")
cleanup() {
  if [[ $keep == 1 ]]; then echo "kept: $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
Q=$tmp/q

# The recipes validate (every key exists, every value in range).
for recipe in quickstart-sft quickstart-rl qwen2.5-0.5b qwen2.5-7b; do
  "$nbrl" config --config "$repo/configs/$recipe.yaml" >/dev/null ||
    fail "configs/$recipe.yaml does not validate with nbrl config"
done
echo "ok: the four recipes in configs/ validate"

# First run: every phase does its work.
start=$(date +%s)
if ! "$repo/deploy/quickstart.sh" --small --skip-setup --build-dir "$build" --out "$Q" \
  >"$tmp/run1.log" 2>&1; then
  tail -40 "$tmp/run1.log" >&2
  fail "deploy/quickstart.sh --small failed (full output: $tmp/run1.log)"
fi
echo "ok: first run in $(($(date +%s) - start)) s"

have() { [[ -s "$1" ]] || fail "missing or empty: $1"; }
have "$Q/world/corpus.jsonl"
have "$Q/world/train.jsonl"
have "$Q/world/test.jsonl"
[[ $(wc -l <"$Q/world/test.jsonl") == 6 ]] || fail "the small world should have 6 test questions"
[[ -d "$Q/world/index" && -n "$(ls -A "$Q/world/index")" ]] || fail "no search index in $Q/world/index"
have "$Q/model0/config.json"
have "$Q/model0/model.safetensors"
have "$Q/model0/tokenizer.json"
grep -q '"hidden_size": *32' "$Q/model0/config.json" || fail "model0 is not the small model"
sft=$(ls -d "$Q"/sft/checkpoints/step-* | grep -v '\.tmp$' | sort | tail -1)
have "$sft/manifest.json"
have "$sft/model.safetensors"
have "$Q/eval-sft/summary.json"
have "$Q/eval-sft/episodes.jsonl"
[[ $(wc -l <"$Q/eval-sft/episodes.jsonl") == 6 ]] || fail "eval-sft should have 6 episodes (--limit 6)"
rl=$(ls -d "$Q"/rl/checkpoints/step-* | grep -v '\.tmp$' | sort | tail -1)
have "$rl/manifest.json"
have "$Q/rl/steps/rank-0.jsonl"
have "$Q/eval-rl/summary.json"
R=$Q/report
have "$R/report.md"
for row in "| EM |" "| F1 |" "| pass@k |" "| mean reward |" "| mean steps |" \
           "| ending " "| EM lookup |" "| questions / episodes | 6 / 6 | 6 / 6 |"; do
  grep -qF -- "$row" "$R/report.md" || fail "report.md has no row '$row'"
done
python3 - "$R/report.json" "$Q/eval-sft/summary.json" "$Q/eval-rl/summary.json" <<'EOF' ||
import json, sys
report = json.load(open(sys.argv[1]))
before, after = (json.load(open(f)) for f in sys.argv[2:4])
for key in ("before", "after", "delta"):
    assert key in report, "report.json has no " + key
assert report["before"]["em"] == before["em"], "before.em differs from eval-sft"
assert report["after"]["em"] == after["em"], "after.em differs from eval-rl"
d = report["delta"]["em"] - (after["em"]["mean"] - before["em"]["mean"])
assert abs(d) < 1e-12, "delta.em is not after - before"
assert report["steps"]["records"] >= 1, "no step records"
EOF
  fail "report.json does not match the two evaluations"
have "$R/curve.tsv"
[[ $(grep -vc '^#' "$R/curve.tsv") -ge 1 ]] || fail "curve.tsv has no steps"
if command -v gnuplot >/dev/null; then
  have "$R/learning.png"
  [[ "$(head -c 8 "$R/learning.png" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]] ||
    fail "learning.png does not start with the PNG signature"
else
  echo "note: gnuplot is not installed; learning.png is not checked"
  grep -q "gnuplot is not installed" "$tmp/run1.log" || fail "the missing gnuplot is not reported"
fi
grep -q "report: $R/report.md" "$tmp/run1.log" || fail "the path of report.md is not printed"
for phase in set-up world model "warm start" "eval before" RL "eval after, report"; do
  grep -q "^== $phase: done in" "$tmp/run1.log" || fail "no duration for phase '$phase'"
done
grep -q "^quickstart: done in" "$tmp/run1.log" || fail "no total time"
echo "ok: every phase's artefacts are there"

# Second run: everything is reused.
start=$(date +%s)
"$repo/deploy/quickstart.sh" --small --skip-setup --build-dir "$build" --out "$Q" \
  >"$tmp/run2.log" 2>&1 || fail "the second run failed (output: $tmp/run2.log)"
took=$(($(date +%s) - start))
for phase in world model sft eval-sft rl eval-rl report; do
  grep -q "^reusing .*\.done-$phase)" "$tmp/run2.log" || fail "the second run did not reuse $phase"
done
if grep -q "nbrl launch: run\|^eval \[" "$tmp/run2.log"; then
  fail "the second run trained or evaluated again"
fi
[[ $took -le 30 ]] || fail "the second run took ${took} s (everything reused: expected seconds)"
grep -qF "| EM |" "$tmp/run2.log" || grep -q "^EM " "$tmp/run2.log" ||
  fail "the second run does not print the table"
echo "ok: second run reused every phase in ${took} s"

# A removed stamp: that phase runs again, the earlier ones are reused.
rm "$Q/.done-report"
"$repo/deploy/quickstart.sh" --small --skip-setup --build-dir "$build" --out "$Q" \
  >"$tmp/run3.log" 2>&1 || fail "the third run failed (output: $tmp/run3.log)"
grep -q "^reusing .*\.done-eval-rl)" "$tmp/run3.log" || fail "the third run did not reuse eval-rl"
grep -q "^reusing .*\.done-report)" "$tmp/run3.log" && fail "the third run reused the report"
have "$Q/.done-report"
echo "ok: a removed stamp re-runs its phase only"

echo "PASS"
