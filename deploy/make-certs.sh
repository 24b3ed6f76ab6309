#!/usr/bin/env bash
# make-certs.sh: makes the credentials of one nbrl run (see docs/security.md):
#
#   DIR/ca.crt, DIR/ca.key          the run's own certificate authority
#   DIR/server.crt, DIR/server.key  the servers' certificate (nbrl-learner, a TCP
#                                   nbrl-sandbox); it is valid for client auth too,
#                                   so one YAML file can give it to every process
#   DIR/NAME.crt, DIR/NAME.key      client certificates (default NAME: client)
#   DIR/token                       the run's shared token (64 hex characters)
#
# Usage: deploy/make-certs.sh --out DIR [options]
#
#   --out DIR        where the files go (created; mode 0700)
#   --host NAME      a DNS name the servers are reached by (repeatable)
#   --ip ADDR        an IP address the servers are reached by (repeatable);
#                    with neither: localhost and 127.0.0.1
#   --client NAME    make a client certificate DIR/NAME.crt (repeatable;
#                    default: client). NAME: letters, digits, '.', '_', '-'.
#   --days N         validity of the certificates in days (default 365)
#   --force          remake every file; without it, existing files are kept
#                    (so running it again with --client NAME adds a client
#                    signed by the same CA)
#   -h, --help       this text
#
# Keys and the token are written with mode 0600. Needs openssl (deploy/setup.sh
# installs it). Then, in the run's YAML:
#
#   auth:
#     token_file: DIR/token
#     tls_cert: DIR/server.crt
#     tls_key: DIR/server.key
#     tls_ca: DIR/ca.crt
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() {
  echo "make-certs: $*" >&2
  exit 2
}

out=""
hosts=()
ips=()
clients=()
days=365
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --host) [ $# -ge 2 ] || die "--host needs a name"; hosts+=("$2"); shift 2 ;;
    --host=*) hosts+=("${1#*=}"); shift ;;
    --ip) [ $# -ge 2 ] || die "--ip needs an address"; ips+=("$2"); shift 2 ;;
    --ip=*) ips+=("${1#*=}"); shift ;;
    --client) [ $# -ge 2 ] || die "--client needs a name"; clients+=("$2"); shift 2 ;;
    --client=*) clients+=("${1#*=}"); shift ;;
    --days) [ $# -ge 2 ] || die "--days needs a number"; days=$2; shift 2 ;;
    --days=*) days=${1#*=}; shift ;;
    --force) force=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
[ -n "$out" ] || die "--out DIR is required (try --help)"
command -v openssl >/dev/null ||
  die "openssl is not installed (deploy/setup.sh installs it; or apt-get install openssl)"
[[ "$days" =~ ^[1-9][0-9]*$ ]] || die "--days needs a positive number, got '$days'"
[ ${#hosts[@]} -gt 0 ] || [ ${#ips[@]} -gt 0 ] || { hosts=(localhost); ips=(127.0.0.1); }
[ ${#clients[@]} -gt 0 ] || clients=(client)
for h in "${hosts[@]}"; do
  [[ "$h" =~ ^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "--host '$h' is not a DNS name"
done
for a in "${ips[@]}"; do
  [[ "$a" =~ ^[0-9.]+$ || "$a" =~ ^[0-9A-Fa-f:]+$ ]] || die "--ip '$a' is not an IP address"
done
for c in "${clients[@]}"; do
  [[ "$c" =~ ^[A-Za-z0-9._-]+$ ]] || die "--client '$c': use letters, digits, '.', '_', '-'"
  case "$c" in ca | server | token) die "--client '$c' would overwrite the $c files" ;; esac
done

umask 077
mkdir -p "$out" || die "cannot create $out"
chmod 700 "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Runs openssl quietly; on failure prints what it said.
ossl() {
  if ! openssl "$@" >"$tmp/log" 2>&1; then
    cat "$tmp/log" >&2
    die "openssl $1 failed"
  fi
}
exists() { [ "$force" = 0 ] && [ -e "$out/$1" ]; }
new_key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
serial() { echo "0x$(openssl rand -hex 16)"; }

# Signs a leaf certificate: NAME CN EXTENSIONS.
sign() {
  local name=$1 cn=$2 ext=$3
  new_key "$tmp/$name.key"
  ossl req -new -key "$tmp/$name.key" -subj "/O=nbrl/CN=$cn" -out "$tmp/$name.csr"
  printf '%s\n' "$ext" >"$tmp/$name.ext"
  ossl x509 -req -in "$tmp/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -set_serial "$(serial)" -days "$days" -sha256 -extfile "$tmp/$name.ext" \
    -out "$tmp/$name.crt"
  install -m 600 "$tmp/$name.key" "$out/$name.key"
  install -m 644 "$tmp/$name.crt" "$out/$name.crt"
  echo "make-certs: wrote $out/$name.crt and $out/$name.key ($cn)"
}

remade_ca=0
if exists ca.crt && exists ca.key; then
  echo "make-certs: keeping the CA in $out/ca.crt"
else
  new_key "$tmp/ca.key"
  ossl req -x509 -new -key "$tmp/ca.key" -subj "/O=nbrl/CN=nbrl run CA" \
    -days "$days" -sha256 -set_serial "$(serial)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$tmp/ca.crt"
  install -m 600 "$tmp/ca.key" "$out/ca.key"
  install -m 644 "$tmp/ca.crt" "$out/ca.crt"
  remade_ca=1
  echo "make-certs: wrote $out/ca.crt and $out/ca.key (keep ca.key off the cluster)"
fi

leaf_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment"
if [ "$remade_ca" = 0 ] && exists server.crt && exists server.key; then
  echo "make-certs: keeping $out/server.crt (--force remakes it)"
else
  sans=()
  for h in "${hosts[@]}"; do sans+=("DNS:$h"); done
  for a in "${ips[@]}"; do sans+=("IP:$a"); done
  san=$(IFS=,; echo "${sans[*]}")
  sign server "nbrl server" "$leaf_ext
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"
fi
for c in "${clients[@]}"; do
  if [ "$remade_ca" = 0 ] && exists "$c.crt" && exists "$c.key"; then
    echo "make-certs: keeping $out/$c.crt"
  else
    sign "$c" "$c" "$leaf_ext
extendedKeyUsage=clientAuth"
  fi
done

if exists token; then
  echo "make-certs: keeping $out/token"
else
  openssl rand -hex 32 >"$tmp/token"
  install -m 600 "$tmp/token" "$out/token"
  echo "make-certs: wrote $out/token"
fi

cat <<EOF
make-certs: done. In the run's YAML (every process):
  auth:
    token_file: $out/token
    tls_cert: $out/server.crt
    tls_key: $out/server.key
    tls_ca: $out/ca.crt
EOF
