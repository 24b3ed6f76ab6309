#!/usr/bin/python3
"""Baseline (c) of bench/sandbox_bench.cc: a Jupyter kernel started inside bwrap,
which is how L0 runs cells. Run with Debian's python3 (python3-ipykernel,
python3-jupyter-client; deploy/setup.sh installs them).

The kernel gets the same isolation flags as an nbrl session, except that it needs
one writable bind: the directory of its ZeroMQ ipc sockets (a kernel talks over
sockets, so without the host network it cannot use TCP). Prints one JSON object:
open_first_s (list: start kernel + wait ready + run print(1)), pass_s (list: one
`pass` cell each), and cells_per_s {concurrency: rate}.

  /usr/bin/python3 bench/jupyter_kernel_bench.py --samples 5 --cells 100 --concurrency 1,8
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file


def bwrap_argv(sock_dir):
    return ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", sock_dir, sock_dir,
            "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "IPYTHONDIR", "/tmp/.ipython", "--setenv", "JUPYTER_RUNTIME_DIR", "/tmp",
            "--chdir", "/tmp"]


def start_kernel(attempts=3):
    """A kernel that starts slowly (cold caches, a loaded machine) misses its first
    heartbeats and jupyter_client reports it dead; such a start is retried."""
    for i in range(attempts):
        try:
            return Kernel()
        except RuntimeError:
            if i == attempts - 1:
                raise


class Kernel:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="nbrl-jk-")
        self.conn, _ = write_connection_file(os.path.join(self.dir, "kernel.json"),
                                             transport="ipc", ip=os.path.join(self.dir, "k"))
        self.proc = subprocess.Popen(
            bwrap_argv(self.dir) + ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", self.conn],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = BlockingKernelClient(connection_file=self.conn)
        self.client.load_connection_file()
        # No heartbeat channel: with dozens of clients in one process its pings
        # run late and jupyter_client declares live kernels dead. The process
        # itself is watched instead.
        self.client.start_channels(hb=False)
        try:
            self.client.wait_for_ready(timeout=120)
        except RuntimeError:
            self.close()
            raise
        if self.proc.poll() is not None:
            self.close()
            raise RuntimeError("kernel exited with %s" % self.proc.returncode)

    def run(self, code):
        reply = self.client.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("cell failed: %r" % reply["content"])

    def close(self):
        self.client.stop_channels()
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    # Each kernel client holds a dozen ZeroMQ descriptors; 64 of them pass 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--cells", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--concurrency", default="1,8")
    args = ap.parse_args()
    out = {"open_first_s": [], "pass_s": [], "cells_per_s": {}}
    for _ in range(args.samples):
        t0 = time.perf_counter()
        k = start_kernel()
        k.run("print(1)")
        out["open_first_s"].append(time.perf_counter() - t0)
        k.close()
    k = start_kernel()
    for _ in range(10):
        k.run("pass")
    for _ in range(args.cells):
        t0 = time.perf_counter()
        k.run("pass")
        out["pass_s"].append(time.perf_counter() - t0)
    k.close()
    for c in [int(x) for x in args.concurrency.split(",") if x]:
        kernels = [start_kernel() for _ in range(c)]
        counts = [0] * c
        stop = time.perf_counter() + args.seconds

        def work(i):
            while time.perf_counter() < stop:
                kernels[i].run("pass")
                counts[i] += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["cells_per_s"][str(c)] = sum(counts) / (time.perf_counter() - t0)
        for kk in kernels:
            kk.close()
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
