#!/usr/bin/python3
"""The Python peer of bench/learner_bench.cc: a plain grpcio server of
nbrl.v1.LearnerService (RegisterActor and PushTrajectories only), the way one would
write the learner's ingestion in Python. The C++ benchmark drives it with the same
client as our learner.

For each TrajectoryGroup it does a minimal check equivalent to the gist of
learner/group_validator.cc (ids present, log-probs parallel to the tokens and
finite, spans within the token pool), remembers the group id (a re-send is a
duplicate, as in learner/ingestor.cc) and acks RESULT_ACCEPTED.

The stubs are generated at start into a temporary directory with
`python3 -m grpc_tools.protoc` from proto/nbrl/v1/learner.proto (Debian:
python3-grpc-tools, python3-grpcio). Prints `PORT=<port>` on stdout once serving
on 127.0.0.1, and stops when its standard input closes.

  learner_peer.py [--proto-root DIR]
"""
import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
from concurrent import futures

import grpc

sys.dont_write_bytecode = True  # no __pycache__ next to the generated stubs


def generate_stubs(proto_root, out_dir):
    """Generates learner_pb2 and learner_pb2_grpc into out_dir and imports them.

    Debian 12's python3-grpc-tools (1.14) bundles a protoc that predates proto3
    `optional` fields. When it refuses them, the stubs are generated from a copy of
    the .proto without that label: the same bytes on the wire, only the presence API
    (HasField) differs, and the peer does not use it.
    """
    def protoc(root):
        proto = os.path.join(root, "nbrl", "v1", "learner.proto")
        return subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}",
             f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", proto],
            capture_output=True, text=True)

    result = protoc(proto_root)
    if result.returncode != 0 and "'optional' labels are disallowed" in result.stderr:
        copy_root = os.path.join(out_dir, "_proto")
        os.makedirs(os.path.join(copy_root, "nbrl", "v1"))
        with open(os.path.join(proto_root, "nbrl", "v1", "learner.proto")) as f:
            text = re.sub(r"^(\s*)optional\s+", r"\1", f.read(), flags=re.M)
        with open(os.path.join(copy_root, "nbrl", "v1", "learner.proto"), "w") as f:
            f.write(text)
        result = protoc(copy_root)
    if result.returncode != 0:
        sys.exit(f"learner_peer.py: python3 -m grpc_tools.protoc failed:\n{result.stderr}")
    sys.path.insert(0, out_dir)
    from nbrl.v1 import learner_pb2, learner_pb2_grpc
    return learner_pb2, learner_pb2_grpc


def check_group(g):
    """Returns why the group is malformed, or None."""
    if not g.group_id or not g.actor_id:
        return "group_id or actor_id is empty"
    if not g.trajectories:
        return "it has no trajectories"
    for i, t in enumerate(g.trajectories):
        if not t.trajectory_id:
            return f"trajectory {i}: trajectory_id is empty"
        n = len(t.token_ids)
        if n == 0 or len(t.behavior_logprobs) != n:
            return f"trajectory {i}: {n} tokens, {len(t.behavior_logprobs)} log-probs"
        if not all(map(math.isfinite, t.behavior_logprobs)):
            return f"trajectory {i}: a log-prob is not finite"
        if not t.steps:
            return f"trajectory {i}: it has no steps"
        for k, s in enumerate(t.steps):
            if not s.action.begin < s.action.end <= n or not s.context:
                return f"trajectory {i}, step {k}: bad action span or no context"
            for span in (s.observation, *s.context):
                if not span.begin <= span.end <= n:
                    return f"trajectory {i}, step {k}: a span is outside the tokens"
    return None


def make_servicer(pb2, pb2_grpc):
    Ack = pb2.GroupAck

    class Learner(pb2_grpc.LearnerServiceServicer):
        def __init__(self):
            self.lock = threading.Lock()
            self.actors = set()
            self.seen = set()

        def RegisterActor(self, request, context):
            if not request.actor_id:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "actor_id is empty")
            with self.lock:
                self.actors.add(request.actor_id)
            response = pb2.RegisterActorResponse(run_id="python-peer")
            response.heartbeat_interval.seconds = 5
            return response

        def PushTrajectories(self, request_iterator, context):
            for g in request_iterator:
                with self.lock:
                    known = g.actor_id in self.actors
                if not known:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"actor '{g.actor_id}' is not registered")
                problem = check_group(g)
                if problem is not None:
                    yield Ack(group_id=g.group_id, result=Ack.RESULT_INVALID,
                              message=problem)
                    continue
                with self.lock:
                    again = g.group_id in self.seen
                    self.seen.add(g.group_id)
                yield Ack(group_id=g.group_id,
                          result=Ack.RESULT_DUPLICATE if again else Ack.RESULT_ACCEPTED)

    return Learner()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-root", default=os.path.join(here, "..", "proto"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbrl_learner_peer_") as stubs:
        pb2, pb2_grpc = generate_stubs(args.proto_root, stubs)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                             options=[("grpc.max_receive_message_length", 256 << 20),
                                      ("grpc.max_send_message_length", 256 << 20)])
        pb2_grpc.add_LearnerServiceServicer_to_server(make_servicer(pb2, pb2_grpc), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        print(f"PORT={port}", flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin (or dies)
        server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
