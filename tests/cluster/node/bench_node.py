"""Figures of the real node: start -> Ready (and its steps), stop, and the memory of the node and its pods,
over a few starts on one control plane. Prints them; asserts nothing about time.

    python -m tests.cluster.node.bench_node [--starts 3]      (root; make cluster-bin node-setup)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

from tests.cluster.controlplane import WORK_ROOT, ControlPlane
from tests.cluster.node.node import RealNode, memory_peak_mib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.node.bench_node", description=__doc__)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args(argv)
    plane = ControlPlane(workdir=WORK_ROOT / f"bench-node-{os.getpid()}")
    state = plane.start()
    print(f"control plane up in {state.startup_seconds:.1f} s")
    ready: list[float] = []
    try:
        for i in range(args.starts):
            node = RealNode(cluster_workdir=plane.workdir, server=state.server, bin_dir=plane.bin_dir)
            node_state = node.start()
            ready.append(node_state.ready_seconds)
            steps = ", ".join(f"{k} {v:.1f}" for k, v in node_state.ready_after_seconds.items())
            peak = memory_peak_mib(node_state.cgroup)
            t0 = time.monotonic()
            node.stop()
            print(
                f"start {i + 1}: Ready in {node_state.ready_seconds:.1f} s ({steps}); "
                f"stopped and cleaned up in {time.monotonic() - t0:.1f} s; peak memory {peak or 0:.0f} MiB"
            )
    finally:
        plane.stop()
        shutil.rmtree(plane.workdir, ignore_errors=True)
    print(f"node start -> Ready: median {statistics.median(ready):.1f} s, max {max(ready):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
