#!/usr/bin/env bash
# ssh_test.sh: `nbrl ssh-launch` across two "hosts" made on this machine.
#
# Usage: NBRL_BINARY_DIR=build tests/ssh_test.sh [--keep]
#
#   --keep   leave the temporary folder (logs, run dirs) behind for a look
#            (NBRL_KEEP_TEST_TMP=1 does the same)
#
# Builds two network namespaces joined by a veth pair (10.77.<r>.1 and .2), runs
# an sshd in each (a generated host key, a generated client key, everything in a
# temporary folder), makes a tiny run (task world, index, tiny model) and runs
# `nbrl ssh-launch` from inside namespace A with an inventory of host A (the
# learner, no actors) and host B (a sandbox worker and 2 actors). Checks:
#   - --dry-run prints the ssh commands (and accepts
#     deploy/ssh/hosts.example.yaml); a bad inventory is refused naming the file,
#     line and field;
#   - a learner host that cannot start (no nbrl binary) makes ssh-launch exit 1
#     and stops the other host;
#   - the run reaches learner.max_steps, exits 0 and leaves the final checkpoint;
#   - every group the learner trained came from host B: A ran no actor, B's actors
#     logged, and B's veth moved more bytes than one copy of the weights (the
#     weight stream in, the groups out);
#   - each host's output came back prefixed with its name;
#   - `nbrl launch --add-actors 1` over ssh adds an actor to B's running launcher;
#   - SIGTERM to ssh-launch stops a second (resumed) run in order: host B's
#     launcher first, then host A's, whose learner leaves a checkpoint at the step
#     it stopped at; it prints the command that resumes; nothing of the run is
#     left in either namespace.
# Everything (sshd, namespaces, the veth pair) is removed on exit, pass or fail.
#
# Needs root (ip netns), iproute2 and OpenSSH (ssh, ssh-keygen, /usr/sbin/sshd);
# exits 77 (skipped) when they are missing. Makes /run/sshd (sshd's privilege
# separation folder) when it is missing, and removes it again. Run through ctest: `ctest -R ssh_test`.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
skip() {
  echo "SKIP: $*"
  exit 77
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

keep=0
if [[ "${NBRL_KEEP_TEST_TMP:-0}" == 1 ]]; then keep=1; fi
for arg in "$@"; do
  case "$arg" in
    --help | -h) usage; exit 0 ;;
    --keep) keep=1 ;;
    *) echo "ssh_test.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
build=${NBRL_BINARY_DIR:-}
[[ -n "$build" && -x "$build/cli/nbrl" ]] ||
  { echo "ssh_test.sh: set NBRL_BINARY_DIR to a build tree with cli/nbrl" >&2; exit 2; }
build=$(cd "$build" && pwd)
nbrl=$build/cli/nbrl

[[ $(id -u) == 0 ]] || skip "needs root to create network namespaces (ip netns)"
for tool in ip ssh ssh-keygen /usr/sbin/sshd timeout; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (openssh-server, iproute2)"
done

tmp=$(mktemp -d /tmp/nbrl-ssh-test.XXXXXX)
tag=$(($$ % 100000))
ns_a=nbrl-ssh-$tag-a ns_b=nbrl-ssh-$tag-b
veth_a=nbs${tag}a veth_b=nbs${tag}b
net=10.77.$((RANDOM % 250 + 1))
addr_a=$net.1 addr_b=$net.2
made_privsep=0
cleanup() {
  local rc=$?
  set +e
  for ns in "$ns_a" "$ns_b"; do
    # Only what this test started runs there: sshd and what came through it.
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [[ -n "$pids" ]] && kill $pids 2>/dev/null
  done
  sleep 0.5
  for ns in "$ns_a" "$ns_b"; do
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [[ -n "$pids" ]] && kill -9 $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  ip link del "$veth_a" 2>/dev/null
  ((made_privsep)) && rmdir /run/sshd 2>/dev/null
  if ((rc != 0 && rc != 77)); then
    for f in "$tmp"/ssh-launch*.out "$tmp"/sshd-*.log "$tmp"/run-*/logs/*.log; do
      [[ -f "$f" ]] && { echo "---- $f (tail)"; tail -n 40 "$f"; }
    done
  fi
  if ((keep)); then echo "kept $tmp"; else rm -rf "$tmp"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Two hosts: namespaces, a veth pair, an sshd in each ----
ip netns add "$ns_a" 2>/dev/null || skip "ip netns add failed (no network namespaces here)"
ip netns add "$ns_b" || skip "ip netns add failed (no network namespaces here)"
ip link add "$veth_a" type veth peer name "$veth_b" || skip "cannot create a veth pair"
ip link set "$veth_a" netns "$ns_a"
ip link set "$veth_b" netns "$ns_b"
ip -n "$ns_a" addr add "$addr_a/24" dev "$veth_a"
ip -n "$ns_b" addr add "$addr_b/24" dev "$veth_b"
for ns in "$ns_a" "$ns_b"; do ip -n "$ns" link set lo up; done
ip -n "$ns_a" link set "$veth_a" up
ip -n "$ns_b" link set "$veth_b" up

ssh-keygen -q -t ed25519 -N '' -C nbrl-ssh-test-host -f "$tmp/host_key"
ssh-keygen -q -t ed25519 -N '' -C nbrl-ssh-test-client -f "$tmp/client_key"
cp "$tmp/client_key.pub" "$tmp/authorized_keys"
# sshd insists on its privilege separation folder (systemd makes it at boot).
if [[ ! -d /run/sshd ]]; then
  mkdir -p /run/sshd && made_privsep=1
fi
start_sshd() { # NAMESPACE ADDRESS NAME
  cat >"$tmp/sshd-$3.conf" <<EOF
ListenAddress $2
Port 22
HostKey $tmp/host_key
PidFile $tmp/sshd-$3.pid
AuthorizedKeysFile $tmp/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
X11Forwarding no
LogLevel ERROR
EOF
  ip netns exec "$1" /usr/sbin/sshd -D -e -f "$tmp/sshd-$3.conf" 2>"$tmp/sshd-$3.log" &
}
start_sshd "$ns_a" "$addr_a" a
start_sshd "$ns_b" "$addr_b" b
ssh_opts=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o ConnectTimeout=5 -i "$tmp/client_key")
for i in $(seq 50); do
  ip netns exec "$ns_a" ssh "${ssh_opts[@]}" "root@$addr_b" true 2>/dev/null && break
  ((i < 50)) || fail "cannot ssh from $ns_a to $addr_b (see $tmp/sshd-b.log)"
  sleep 0.2
done
echo "hosts up: a=$addr_a b=$addr_b"

# ---- A tiny run ----
"$nbrl" world --out "$tmp/world" --train 20 --val 0 --test 0 --people 20 --orgs 8 \
  --cities 6 --works 8 >/dev/null
"$build/sandbox_worker/nbrl-sandbox" index "$tmp/world/corpus.jsonl" "$tmp/world/index" \
  "run.dir=$tmp/index-run" metrics.enabled=false >/dev/null 2>&1 ||
  fail "nbrl-sandbox index failed"
"$nbrl" init-model --out "$tmp/model" --text "$tmp/world/corpus.jsonl" --vocab 600 \
  --hidden 32 --layers 1 --heads 4 --kv-heads 2 --intermediate 64 --positions 4096 \
  >/dev/null
weights=$(stat -c %s "$tmp/model/model.safetensors")
cat >"$tmp/run.yaml" <<EOF
run:
  dir: $tmp/run-default
model:
  path: $tmp/model
sandbox:
  tools:
    index: $tmp/world/index
learner:
  batch_groups: 2
  lr: 0.001
  max_staleness: 100
  checkpoint_every: 2
actor:
  data: $tmp/world/train.jsonl
  group_size: 2
  groups_per_batch: 1
  max_steps: 2
  max_action_tokens: 32
  context_tokens: 2048
launch:
  actors: 2
EOF
cat >"$tmp/hosts.yaml" <<EOF
learner:
  host: a
  address: $addr_a
  port: 29500
ssh_options: [-o, StrictHostKeyChecking=no, -o, UserKnownHostsFile=/dev/null,
              -o, LogLevel=ERROR, -o, ConnectTimeout=5]
defaults:
  user: root
  identity_file: $tmp/client_key
  bin_dir: $build
  workdir: $tmp
hosts:
  - name: a
    address: $addr_a
    actors: 0
    run_dir: $tmp/run-a
  - name: b
    address: $addr_b
    actors: 2
    run_dir: $tmp/run-b
EOF

# Fails when a namespace runs anything but its sshd (the launchers, their
# children and the ssh sessions must all be gone).
# sshd's per-connection processes may take a moment to go.
no_leftovers() { # WHEN
  local ns left i
  for ns in "$ns_a" "$ns_b"; do
    for i in $(seq 25); do
      left=$(ip netns pids "$ns" | grep -vxF "$(cat "$tmp"/sshd-*.pid)" || true)
      [[ -z "$left" ]] && break
      sleep 0.2
    done
    [[ -z "$left" ]] ||
      fail "processes left in $ns $1: $(ps -o pid,args -p "${left//$'\n'/,}")"
  done
}

# ---- --dry-run and a bad inventory ----
dry=$("$nbrl" ssh-launch --inventory "$tmp/hosts.yaml" --config "$tmp/run.yaml" --dry-run)
grep -q "^# a: node 1 of 2, roles learner$" <<<"$dry" || fail "dry run, host a: $dry"
grep -q "^# b: node 0 of 1, roles sandbox,actor$" <<<"$dry" || fail "dry run, host b: $dry"
grep -q "^ssh -o BatchMode=yes -l root -i $tmp/client_key .* $addr_b .*launch.learner_host=$addr_a launch.learner_port=29500" <<<"$dry" ||
  fail "dry run has no ssh command for b: $dry"
example=$(dirname "$0")/../deploy/ssh/hosts.example.yaml
"$nbrl" ssh-launch --inventory "$example" --dry-run >"$tmp/example.out" 2>&1 ||
  fail "deploy/ssh/hosts.example.yaml is refused: $(cat "$tmp/example.out")"
printf 'hosts:\n  - address: %s\n    port: twenty-two\n' "$addr_b" >"$tmp/bad.yaml"
if "$nbrl" ssh-launch --inventory "$tmp/bad.yaml" >"$tmp/bad.out" 2>&1; then
  fail "a bad inventory was accepted"
fi
grep -q "$tmp/bad.yaml:3: hosts\[0\].port: expected an integer" "$tmp/bad.out" ||
  fail "the bad inventory's error does not name file, line and field: $(cat "$tmp/bad.out")"

# ---- A learner host that cannot start fails the run and stops the others ----
sed "s|^    actors: 0$|    actors: 0\n    bin_dir: $tmp/no-such-dir|" "$tmp/hosts.yaml" \
  >"$tmp/hosts-broken.yaml"
set +e
ip netns exec "$ns_a" timeout 120 "$nbrl" ssh-launch --inventory "$tmp/hosts-broken.yaml" \
  --config "$tmp/run.yaml" "run.dir=$tmp/run-broken" >"$tmp/ssh-launch-0.out" 2>&1
rc=$?
set -e
((rc == 1)) || fail "ssh-launch exited $rc when the learner host could not start"
grep -q "^\[a\] nbrl ssh-launch: no executable nbrl in $tmp/no-such-dir" \
  "$tmp/ssh-launch-0.out" || fail "no message about host a's missing binary"
# b is stopped at once, maybe before its launcher has its signal handler (143).
grep -Eq "^nbrl ssh-launch: b \(node 0, sandbox,actor\): (done|exit status 143)$" \
  "$tmp/ssh-launch-0.out" || fail "host b was not stopped after the learner host failed"
no_leftovers "after the learner host failed"

# ---- A run to learner.max_steps ----
counters() { # rx_bytes tx_bytes of B's end of the veth
  ip netns exec "$ns_b" sh -c "cat /sys/class/net/$veth_b/statistics/rx_bytes \
    /sys/class/net/$veth_b/statistics/tx_bytes" | tr '\n' ' '
}
read -r rx0 tx0 <<<"$(counters)"
start=$(date +%s)
set +e
ip netns exec "$ns_a" timeout 300 "$nbrl" ssh-launch --inventory "$tmp/hosts.yaml" \
  --config "$tmp/run.yaml" learner.max_steps=3 >"$tmp/ssh-launch-1.out" 2>&1
rc=$?
set -e
echo "first run: exit $rc after $(($(date +%s) - start)) s"
((rc == 0)) || fail "ssh-launch exited $rc"
read -r rx1 tx1 <<<"$(counters)"
steps=$(wc -l <"$tmp/run-a/steps/rank-0.jsonl")
((steps == 3)) || fail "the learner logged $steps steps, expected 3"
[[ -f "$tmp/run-a/checkpoints/step-00000003/manifest.json" ]] ||
  fail "no checkpoint at step 3 in $tmp/run-a/checkpoints"
ls "$tmp"/run-a/logs/actor-*.log >/dev/null 2>&1 && fail "host a ran actors"
for a in 0 1; do
  [[ -s "$tmp/run-b/logs/actor-$a.log" ]] || fail "host b has no log of actor-$a"
done
[[ -f "$tmp/run-b/ssh-launch/node-0.yaml" ]] || fail "the config was not copied to b"
grep -q '^\[a\] nbrl launch: ' "$tmp/ssh-launch-1.out" || fail "no output prefixed [a]"
grep -q '^\[b\] nbrl launch: ' "$tmp/ssh-launch-1.out" || fail "no output prefixed [b]"
rx=$((rx1 - rx0)) tx=$((tx1 - tx0))
echo "veth on b: rx $rx bytes, tx $tx bytes; weights $weights bytes"
((rx > weights)) || fail "b received $rx bytes, less than one copy of the weights"
((tx > 20000)) || fail "b sent only $tx bytes: the groups did not cross the veth"
no_leftovers "after the run"

# ---- SIGTERM stops both hosts in order; the learner leaves a checkpoint ----
ip netns exec "$ns_a" "$nbrl" ssh-launch --inventory "$tmp/hosts.yaml" \
  --config "$tmp/run.yaml" learner.max_steps=0 >"$tmp/ssh-launch-2.out" 2>&1 &
launcher=$!
for i in $(seq 600); do
  (($(wc -l <"$tmp/run-a/steps/rank-0.jsonl") >= 5)) && break
  kill -0 "$launcher" 2>/dev/null || fail "the second run ended by itself"
  ((i < 600)) || fail "the second run made no progress in 120 s"
  sleep 0.2
done
# Scaling a running host, as docs/deploy-ssh.md says: its launcher takes one more.
ip netns exec "$ns_a" ssh "${ssh_opts[@]}" "root@$addr_b" "cd $tmp && $nbrl launch \
  --config run-b/ssh-launch/node-0.yaml run.dir=run-b launch.node=0 --add-actors 1" \
  >"$tmp/add-actors.out" 2>&1 || fail "--add-actors on b failed: $(cat "$tmp/add-actors.out")"
grep -q "actors 2 -> 3" "$tmp/add-actors.out" ||
  fail "--add-actors on b: $(cat "$tmp/add-actors.out")"
[[ -f "$tmp/run-b/logs/actor-2.pid" ]] || fail "b started no actor-2"
kill -TERM "$launcher"
set +e
timeout 200 tail --pid="$launcher" -f /dev/null
wait "$launcher"
rc=$?
set -e
((rc == 0)) || fail "ssh-launch exited $rc after SIGTERM"
line_of() { grep -n -m1 "$1" "$tmp/ssh-launch-2.out" | cut -d: -f1; }
b_stopped=$(line_of '^\[b\] nbrl launch: stopped')
a_stopping=$(line_of '^\[a\] nbrl launch: stopping')
[[ -n "$b_stopped" ]] || fail "host b's launcher did not stop in order"
[[ -n $(line_of '^\[a\] nbrl launch: stopped') ]] ||
  fail "host a's launcher did not stop in order"
((b_stopped < a_stopping)) || fail "the learner host stopped before the actor host had"
grep -q "^nbrl ssh-launch: resume with: nbrl ssh-launch --inventory $tmp/hosts.yaml" \
  "$tmp/ssh-launch-2.out" || fail "no resume command after SIGTERM"
steps=$(wc -l <"$tmp/run-a/steps/rank-0.jsonl")
[[ -f $(printf "%s/run-a/checkpoints/step-%08d/manifest.json" "$tmp" "$steps") ]] ||
  fail "no checkpoint at step $steps, where the run stopped"
no_leftovers "after SIGTERM"
echo "PASS: ssh-launch ran 3 steps over the veth and stopped a second run at step $steps" \
  "with a checkpoint ($(($(date +%s) - start)) s)"
