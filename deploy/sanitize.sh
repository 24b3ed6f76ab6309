#!/usr/bin/env bash
# sanitize.sh: the unit tests under AddressSanitizer + UndefinedBehaviorSanitizer,
# and the concurrency tests under ThreadSanitizer (what CI runs after deploy/test.sh).
#
# Usage: deploy/sanitize.sh [asan|tsan|all] [--build-only | --test-only]
#                           [-- CTEST_ARGS...]
#
#   asan          build-asan (-DNBRL_SANITIZE=address,undefined): ctest -L unit
#   tsan          build-tsan (-DNBRL_SANITIZE=thread): ctest -L concurrency
#   all           both, asan first (the default)
#   --build-only  configure and build, run nothing
#   --test-only   run the tests of an existing build
#   -- ARGS       more ctest arguments, e.g. -- -R '^common_' (narrows the label)
#   --help        this text
#
# Environment: JOBS (build jobs, default: number of cores), BUILD_DIR_ASAN
# (build-asan), BUILD_DIR_TSAN (build-tsan), NBRL_SANITIZER_LOGS (a folder for the
# report files, in asan/ and tsan/; default <build dir>/sanitizer-logs).
#
# Only the targets a label's tests need are built (nbrl_tests_unit,
# nbrl_tests_concurrency; cmake/NbrlHelpers.cmake). ASan, LSan and TSan reports go
# to files, one per process that reported, so a report from a child process (a
# server a test started, a sandbox worker) counts too; UBSan's are found in the
# tests' output. After ctest every report is printed and any report fails the run,
# even when ctest passed. Suppressions for third-party code
# are in deploy/sanitizers/*.supp, each with its reason; nbrl's own frames are never
# suppressed. Prints the time of every phase; exits non-zero on a failed build, a
# failed test or any sanitizer report. Assumes deploy/setup.sh has run.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

which_builds=all
mode=all
ctest_extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    asan | tsan | all) which_builds=$1 ;;
    --build-only) mode='build' ;;
    --test-only) mode='test' ;;
    --help | -h)
      usage
      exit 0
      ;;
    --)
      shift
      ctest_extra=("$@")
      break
      ;;
    *)
      echo "sanitize.sh: unknown argument '$1' (see --help)" >&2
      exit 2
      ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
root=$PWD
supp=$root/deploy/sanitizers
jobs=${JOBS:-$(nproc)}

# Unit tests left out under ASan, each with its reason. Keep this empty unless a
# test cannot run in the CI budget or cannot run instrumented at all.
asan_exclude=''

step() { printf '\n== %s\n' "$*"; }
now() { date +%s; }
took() { echo "$1 took $(($(now) - $2))s"; }

configure() {  # configure <build dir> <NBRL_SANITIZE value>
  local dir=$1 value=$2 generator=()
  if command -v ninja >/dev/null; then generator=(-G Ninja); fi
  if [ -f "$dir/CMakeCache.txt" ]; then
    cmake -S . -B "$dir" -DNBRL_SANITIZE="$value" >/dev/null
  else
    cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DNBRL_SANITIZE="$value" >/dev/null
  fi
}

# run_tests <name> <build dir> <label> [extra ctest args]: ctest, then the reports.
run_tests() {
  local name=$1 dir=$2 label=$3 logs
  shift 3
  case $dir in
    /*) logs=$dir/sanitizer-logs ;;
    *) logs=$root/$dir/sanitizer-logs ;;
  esac
  if [ -n "${NBRL_SANITIZER_LOGS:-}" ]; then logs=$NBRL_SANITIZER_LOGS/$name; fi
  rm -rf "$logs"
  mkdir -p "$logs"
  # halt_on_error: the first report ends the process (and fails its test).
  local asan lsan ubsan_opts tsan
  asan="halt_on_error=1:detect_leaks=1:check_initialization_order=1"
  asan+=":strict_init_order=1:detect_stack_use_after_return=1"
  asan+=":suppressions=$supp/asan.supp:log_path=$logs/asan"
  lsan="suppressions=$supp/lsan.supp:print_suppressions=0"
  ubsan_opts="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
  # ignore_noninstrumented_modules: see deploy/sanitizers/tsan.supp.
  tsan="halt_on_error=1:second_deadlock_stack=1:history_size=4"
  tsan+=":ignore_noninstrumented_modules=1"
  tsan+=":suppressions=$supp/tsan.supp:log_path=$logs/tsan"
  local rc=0
  ASAN_OPTIONS=$asan LSAN_OPTIONS=$lsan UBSAN_OPTIONS=$ubsan_opts TSAN_OPTIONS=$tsan \
    ctest --test-dir "$dir" -L "^$label\$" --output-on-failure --timeout 900 "$@" ||
    rc=$?
  # UBSan linked beside ASan ignores log_path and reports on stderr: find its
  # reports in the tests' output (ctest keeps all of it, passed tests' too).
  local reports ubsan
  reports=$(find "$logs" -type f -size +0 | sort)
  ubsan=$(grep -n -A12 'runtime error:' "$dir/Testing/Temporary/LastTest.log" \
    2>/dev/null || true)
  if [ -n "$reports" ] || [ -n "$ubsan" ]; then
    echo "$name: sanitizer reports:"
    local f
    for f in $reports; do
      printf '\n--- %s\n' "$f"
      cat "$f"
    done
    if [ -n "$ubsan" ]; then
      printf '\n--- UndefinedBehaviorSanitizer, from %s\n%s\n' \
        "$dir/Testing/Temporary/LastTest.log" "$ubsan"
    fi
    echo "$name: FAILED: sanitizer reports (above)"
    rc=1
  elif [ "$rc" -ne 0 ]; then
    echo "$name: FAILED: ctest exit status $rc"
  else
    echo "$name: no sanitizer reports"
  fi
  return "$rc"
}

# one <name> <build dir> <NBRL_SANITIZE> <label> [extra ctest args]. Called as
# `one ... || failed+=(...)`, where errexit is off: every step checks its own status.
one() {
  local name=$1 dir=$2 value=$3 label=$4 start
  shift 4
  if [ "$mode" != test ]; then
    step "$name: configure $dir (NBRL_SANITIZE=$value)"
    start=$(now)
    configure "$dir" "$value" || return 1
    took "$name configure" "$start"
    step "$name: build nbrl_tests_$label (-j$jobs)"
    start=$(now)
    cmake --build "$dir" -j "$jobs" --target "nbrl_tests_$label" || return 1
    took "$name build" "$start"
  fi
  if [ "$mode" != build ]; then
    if [ ! -f "$dir/CTestTestfile.cmake" ]; then
      echo "sanitize.sh: $dir is not built; run without --test-only first" >&2
      return 1
    fi
    step "$name: ctest -L $label"
    start=$(now)
    local rc=0
    run_tests "$name" "$dir" "$label" "$@" "${ctest_extra[@]}" || rc=$?
    took "$name tests" "$start"
    return "$rc"
  fi
}

total=$(now)
failed=()
if [ "$which_builds" != tsan ]; then
  args=()
  if [ -n "$asan_exclude" ]; then args=(-E "$asan_exclude"); fi
  one asan "${BUILD_DIR_ASAN:-build-asan}" address,undefined unit "${args[@]}" ||
    failed+=(asan)
fi
if [ "$which_builds" != asan ]; then
  one tsan "${BUILD_DIR_TSAN:-build-tsan}" thread concurrency || failed+=(tsan)
fi
step "summary"
took "sanitize.sh ($which_builds)" "$total"
if [ ${#failed[@]} -gt 0 ]; then
  echo "sanitize.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "sanitize.sh: passed"
