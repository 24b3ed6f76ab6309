#!/usr/bin/env bash
# The test command: set-up, configure, build, and the whole test suite under ctest.
# Under CI=true also the sanitizer builds and the short fuzzing pass. Exits non-zero on any failure.
#
#   deploy/test.sh                 everything (what CI runs)
#   deploy/test.sh -R config       only tests matching a regex (ctest -R)
#   BUILD_DIR=build-x deploy/test.sh
#
# Environment: BUILD_DIR (default build), JOBS (default: number of cores),
# NBRL_TEST_LONG=1 also runs the long (soak) tests, skipped by default.
# NBRL_TEST_FUZZ=1 (the default under CI=true) then builds the libFuzzer targets in
# build-fuzz and runs the short fuzzing pass (deploy/fuzz.sh: 60 s in all);
# NBRL_TEST_FUZZ=0 skips it. NBRL_TEST_SANITIZERS=1 (the default under CI=true)
# first runs deploy/sanitize.sh: the unit tests under ASan+UBSan (build-asan) and
# the concurrency tests under TSan (build-tsan).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

step() { printf '\n== %s\n' "$*"; }

step "set-up (deploy/setup.sh)"
bash deploy/setup.sh

step "configure ($build)"
if command -v ninja >/dev/null; then generator=(-G Ninja); else generator=(); fi
if [ -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" >/dev/null
else
  cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi

step "build (-j$jobs)"
start=$(date +%s)
cmake --build "$build" -j "$jobs"
echo "build took $(( $(date +%s) - start ))s"

step "tests"
# Every test removes its own temporary files (testutil::TempDir, traps in the
# shell tests); a crashed or killed one cannot, so the suite, and the sanitizer
# runs after it, get a TMPDIR of their own, removed at exit.
test_tmp=$(mktemp -d /tmp/nbrl-test.XXXXXX)
trap 'rm -rf "$test_tmp"' EXIT
export TMPDIR=$test_tmp
ctest_args=(--test-dir "$build" --output-on-failure --timeout 900)
if [ "${NBRL_TEST_LONG:-0}" != 1 ]; then
  ctest_args+=(--label-exclude long)
fi
ctest "${ctest_args[@]}" "$@"

sanitizers=${NBRL_TEST_SANITIZERS:-$([ "${CI:-}" = true ] && echo 1 || echo 0)}
if [ "$sanitizers" = 1 ] && [ $# -eq 0 ]; then
  step "sanitizers (deploy/sanitize.sh: unit tests under ASan+UBSan, concurrency under TSan)"
  start=$(date +%s)
  bash deploy/sanitize.sh all
  echo "sanitizers took $(( $(date +%s) - start ))s"
else
  echo "(sanitizers skipped: NBRL_TEST_SANITIZERS=1 deploy/test.sh runs deploy/sanitize.sh after the suite)"
fi

fuzz=${NBRL_TEST_FUZZ:-$([ "${CI:-}" = true ] && echo 1 || echo 0)}
if [ "$fuzz" = 1 ] && [ $# -eq 0 ]; then
  step "fuzzing (deploy/fuzz.sh, the short pass)"
  start=$(date +%s)
  bash deploy/fuzz.sh
  echo "fuzzing took $(( $(date +%s) - start ))s"
else
  echo "(fuzzing skipped: NBRL_TEST_FUZZ=1 deploy/test.sh runs deploy/fuzz.sh after the suite)"
fi
