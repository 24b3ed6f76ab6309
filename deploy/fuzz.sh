#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan) and runs
# each on its seed corpus, fuzz/corpus/<target>/ (docs/development.md, "Fuzzing").
#
# Usage: deploy/fuzz.sh [--seconds N] [--target NAME]... [--merge]
#                       [--build-only | --no-build] [-- LIBFUZZER_ARGS...]
#
#   (no options)    the short run CI does: 60 s in all, shared by the targets
#   --seconds N     N seconds per target instead (long runs: --seconds 3600)
#   --target NAME   only this target (repeatable): tokenizer, safetensors, config,
#                   action_parser, trajectory_validator, weight_chunk
#   --merge         afterwards, merge the new inputs that add coverage into
#                   fuzz/corpus/<target>/ (to commit); without it they stay in the
#                   scratch corpus only
#   --build-only    configure and build, run nothing
#   --no-build      run the binaries already built
#   -- ARGS         more libFuzzer flags for every target, e.g. -- -jobs=2
#   --help          this text
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz), JOBS (build jobs, default: number of
# cores), FUZZ_WORK (scratch corpora, artifacts and logs; default
# <build dir>/fuzz-work), FUZZ_TIMEOUT (seconds one input may take before it counts
# as a hang, default 10), FUZZ_RSS_MB (memory limit, default 2048).
#
# Targets run with a 1 MB stack, so that unbounded recursion is found with small
# inputs. Prints one line per target (executions, coverage, corpus, time). Exits 1
# when any target found a crash, a sanitizer report, a leak, a hang or an
# out-of-memory, after printing the command that reproduces it (the target binary on
# the saved input); exits 2 on a usage or build error. Needs clang and
# libclang-rt-dev (deploy/setup.sh).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

all_targets=(tokenizer safetensors config action_parser trajectory_validator weight_chunk)
total_budget=60
per_target=""
targets=()
merge=0
mode=all
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds)
      [ $# -ge 2 ] || { echo "fuzz.sh: --seconds needs a number" >&2; exit 2; }
      per_target=$2
      shift
      ;;
    --target)
      [ $# -ge 2 ] || { echo "fuzz.sh: --target needs a name" >&2; exit 2; }
      targets+=("$2")
      shift
      ;;
    --merge) merge=1 ;;
    --build-only) mode=build ;;
    --no-build) mode=run ;;
    --help | -h)
      usage
      exit 0
      ;;
    --)
      shift
      extra=("$@")
      break
      ;;
    *)
      echo "fuzz.sh: unknown argument '$1' (see --help)" >&2
      exit 2
      ;;
  esac
  shift
done
if [ -n "$per_target" ] && ! [[ "$per_target" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: --seconds wants a positive whole number, got '$per_target'" >&2
  exit 2
fi
if [ ${#targets[@]} -eq 0 ]; then targets=("${all_targets[@]}"); fi
for t in "${targets[@]}"; do
  if ! [[ " ${all_targets[*]} " == *" $t "* ]]; then
    echo "fuzz.sh: no target '$t'; the targets are: ${all_targets[*]}" >&2
    exit 2
  fi
done

cd "$(dirname "$0")/.."
root=$PWD
build=${FUZZ_BUILD_DIR:-build-fuzz}
case "$build" in /*) ;; *) build=$root/$build ;; esac
jobs=${JOBS:-$(nproc)}
work=${FUZZ_WORK:-$build/fuzz-work}
timeout=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}

if [ "$mode" != run ]; then
  for tool in clang clang++; do
    if ! command -v "$tool" >/dev/null; then
      echo "fuzz.sh: $tool not found; run deploy/setup.sh (packages clang," \
        "libclang-rt-dev)" >&2
      exit 2
    fi
  done
  echo "== configure and build ($build, -j$jobs)"
  start=$(date +%s)
  generator=()
  if command -v ninja >/dev/null; then generator=(-G Ninja); fi
  if [ -f "$build/CMakeCache.txt" ]; then
    cmake -S . -B "$build" >/dev/null || exit 2
  else
    CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S . -B "$build" "${generator[@]}" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNBRL_FUZZ=ON -DNBRL_BUILD_TESTS=OFF \
      >/dev/null || exit 2
  fi
  cmake --build "$build" --target fuzz -j "$jobs" || exit 2
  echo "build took $(($(date +%s) - start))s"
fi
if [ "$mode" = build ]; then exit 0; fi

# The short run shares total_budget: each target gets an equal part of what is left,
# less the ~2 s a target takes to start and load its corpus.
deadline=""
if [ -z "$per_target" ]; then deadline=$(($(date +%s) + total_budget)); fi

# Readable stack traces in reports, when a symbolizer is installed.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  for s in llvm-symbolizer /usr/lib/llvm-*/bin/llvm-symbolizer; do
    if command -v "$s" >/dev/null 2>&1; then
      export ASAN_SYMBOLIZER_PATH
      ASAN_SYMBOLIZER_PATH=$(command -v "$s")
      break
    fi
  done
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if [ -n "$deadline" ]; then budget="${total_budget}s in all"; else budget="${per_target}s each"; fi
echo "== fuzz: ${targets[*]}; $budget; per input ${timeout}s, ${rss_mb} MB;" \
  "scratch in $work"
findings=()
left=${#targets[@]}
for t in "${targets[@]}"; do
  secs=$per_target
  if [ -n "$deadline" ]; then
    secs=$(((deadline - $(date +%s)) / left - 2))
    if [ "$secs" -lt 1 ]; then secs=1; fi
  fi
  left=$((left - 1))
  bin=$build/fuzz/${t}_fuzzer
  if [ ! -x "$bin" ]; then
    echo "fuzz.sh: $bin is not built (run without --no-build)" >&2
    exit 2
  fi
  scratch=$work/corpus/$t
  artifacts=$work/artifacts/$t
  log=$work/logs/$t.log
  mkdir -p "$scratch" "$artifacts" "$(dirname "$log")"
  rm -f "$artifacts"/*
  args=(-max_total_time="$secs" -timeout="$timeout" -rss_limit_mb="$rss_mb"
    -artifact_prefix="$artifacts/" -print_final_stats=1)
  if [ -f "fuzz/$t.dict" ]; then args+=(-dict="fuzz/$t.dict"); fi
  start=$(date +%s)
  rc=0
  # New inputs go to the first directory, the scratch one; the seeds only feed. A
  # 1 MB stack (an eighth of the usual) makes unbounded recursion show up with
  # inputs of a few KB, the sizes libFuzzer tries.
  (ulimit -s 1024 && exec "$bin" "${args[@]}" "${extra[@]}" "$scratch" \
    "fuzz/corpus/$t") >"$log" 2>&1 || rc=$?
  took=$(($(date +%s) - start))

  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  last=$(grep -a -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  artifact=$(find "$artifacts" -maxdepth 1 -type f \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) |
    head -1)
  status=ok
  if [ "$rc" != 0 ] || [ -n "$artifact" ]; then status=FINDING; fi
  printf 'fuzz: %-21s %4ss  %9s execs (%s/s)  cov %s  ft %s  corpus %s (+%s new)  %s\n' \
    "$t" "$took" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
    "${added:-0}" "$status"
  if [ "$status" = FINDING ]; then
    echo "---- $t: libFuzzer exit $rc; the report (all of it in $log):"
    # From the first complaint (the target's own check, a sanitizer, libFuzzer's
    # timeout/leak/oom notice) to libFuzzer's summary.
    sed -n -E '/_fuzzer: |runtime error|==[0-9]+== ?ERROR|ALARM|out-of-memory/,/^SUMMARY/p' \
      "$log" | head -60
    if [ -n "$artifact" ]; then
      echo "---- reproduce: (ulimit -s 1024; $bin $artifact)"
      findings+=("$t: $artifact")
    else
      findings+=("$t: exit $rc, no artifact; see $log")
    fi
    continue
  fi
  if [ "$merge" = 1 ]; then
    before=$(find "fuzz/corpus/$t" -type f | wc -l)
    (ulimit -s 1024 && exec "$bin" -merge=1 -timeout="$timeout" \
      -rss_limit_mb="$rss_mb" "fuzz/corpus/$t" "$scratch") \
      >"$work/logs/$t.merge.log" 2>&1 ||
      { echo "fuzz.sh: merging $t failed; see $work/logs/$t.merge.log" >&2; exit 2; }
    after=$(find "fuzz/corpus/$t" -type f | wc -l)
    echo "fuzz: $t: merged $((after - before)) new inputs into fuzz/corpus/$t"
  fi
done

if [ ${#findings[@]} -gt 0 ]; then
  echo "fuzz: ${#findings[@]} finding(s):"
  printf '  %s\n' "${findings[@]}"
  exit 1
fi
echo "fuzz: no findings"
