"""Operator benchmark (`make bench-operator`): prints figures, asserts nothing.

1. Latency from `apply` (the QuantBenchmark POST) to all first-step servers created (every variant's
   Deployment of a three-variant run exists), measured by polling the API every 10 ms; N repetitions.
2. The operator's CPU and memory with 50 QuantBenchmarks in flight across 5 namespaces (3 variants each on
   the 16-GPU h100 pool, so 16 servers run and the others wait for GPUs): CPU seconds over a window after
   all are created, mean CPU %, RSS and peak RSS (from /proc of the operator process).

Goals (issue 6): under 1 s, and under 200 MiB.

Starts its own control plane (tests/cluster), or uses QUANTBENCH_TEST_KUBECONFIG when set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from quantbench.kube import Kube
from quantbench.naming import LABEL_BENCHMARK, selector
from tests.cluster.controlplane import BIN_DIR, WORK_ROOT, ControlPlane
from tests.cluster.kube import Cluster, wait_for
from tests.operator import factories
from tests.operator.conftest import release
from tests.operator.harness import OperatorProcess, install_crd, install_operator_rbac

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def memory_mib(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def gone(kube: Kube, ns: str, name: str) -> bool:
    return kube.get("QuantBenchmark", ns, name) is None


def create(kube: Kube, ns: str, name: str) -> None:
    body = factories.benchmark(name)
    body["metadata"]["namespace"] = ns
    kube.create(body)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="latency measurements")
    p.add_argument("--benchmarks", type=int, default=50, help="QuantBenchmarks in flight")
    p.add_argument("--namespaces", type=int, default=5)
    p.add_argument("--window", type=float, default=60.0, help="CPU measurement window, s")
    args = p.parse_args()

    external = os.environ.get("QUANTBENCH_TEST_KUBECONFIG")
    plane = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-", dir=WORK_ROOT if WORK_ROOT.exists() else None))
    if external:
        cluster = Cluster.from_kubeconfig(Path(external), BIN_DIR, Path(external).parent)
    else:
        plane = ControlPlane(workdir=workdir)
        state = plane.start()
        cluster = Cluster.from_kubeconfig(plane.kubeconfig, BIN_DIR, workdir, state.startup_seconds)
        print(f"control plane started in {state.startup_seconds:.1f} s")
    api = cluster.api_client()
    kube = Kube(api)
    op: OperatorProcess | None = None
    namespaces: list[str] = []
    try:
        install_crd(kube)
        install_operator_rbac(kube)
        namespaces += [
            cluster.create_namespace(f"bench-{int(time.time())}-{i}") for i in range(args.namespaces)
        ]
        op = OperatorProcess(cluster, None, workdir, env={"QUANTBENCH_RESYNC_SECONDS": "10"}).start()
        # Wait for the operator to be up: it answers a first benchmark.
        create(kube, namespaces[0], "warmup")
        wait_for(
            lambda: len(kube.list("Deployment", namespaces[0], selector({LABEL_BENCHMARK: "warmup"}))) == 3,
            60,
            "warm-up run",
        )
        kube.delete("QuantBenchmark", namespaces[0], "warmup")
        wait_for(lambda: kube.get("QuantBenchmark", namespaces[0], "warmup") is None, 30, "warm-up deleted")

        latencies = []
        for i in range(args.repeats):
            name = f"lat-{i}"
            ns = namespaces[i % len(namespaces)]
            t0 = time.perf_counter()
            create(kube, ns, name)
            sel = selector({LABEL_BENCHMARK: name})
            while len(kube.list("Deployment", ns, sel)) < 3:
                time.sleep(0.01)
            latencies.append(time.perf_counter() - t0)
            kube.delete("QuantBenchmark", ns, name)
            wait_for(partial(gone, kube, ns, name), 30, "deleted")

        assert op.proc is not None
        pid = op.proc.pid
        rss0, _ = memory_mib(pid)
        t_create = time.perf_counter()
        for i in range(args.benchmarks):
            create(kube, namespaces[i % len(namespaces)], f"load-{i:03d}")
        running = wait_for(
            lambda: (
                n
                if (
                    n := sum(
                        1
                        for ns in namespaces
                        for b in kube.list("QuantBenchmark", ns)
                        if (b.get("status") or {}).get("currentRun")
                    )
                )
                == args.benchmarks
                else None
            ),
            180,
            "every benchmark running",
        )
        settle = time.perf_counter() - t_create
        cpu0, w0 = cpu_seconds(pid), time.perf_counter()
        time.sleep(args.window)
        cpu1, w1 = cpu_seconds(pid), time.perf_counter()
        rss, peak = memory_mib(pid)
        servers = sum(len(kube.list("Deployment", ns)) for ns in namespaces)
        waiting = sum(
            1
            for ns in namespaces
            for b in kube.list("QuantBenchmark", ns)
            for v in (b.get("status") or {}).get("variants") or []
            if v.get("phase") == "WaitingForGPU"
        )
        op.assert_alive()
        print()
        print("| figure | value | goal |")
        print("|---|---|---|")
        print(
            f"| apply -> all 3 first-step servers created, median of {len(latencies)} | "
            f"{statistics.median(latencies) * 1000:.0f} ms (max {max(latencies) * 1000:.0f} ms) | < 1000 ms |"
        )
        print(
            f"| {running} QuantBenchmarks in flight ({len(namespaces)} namespaces): all runs started after | {settle:.1f} s | |"
        )
        print(f"| servers created / variants waiting for GPUs | {servers} / {waiting} | |")
        print(
            f"| operator CPU over {w1 - w0:.0f} s with {running} in flight | {cpu1 - cpu0:.2f} s "
            f"({100 * (cpu1 - cpu0) / (w1 - w0):.1f}% of one core) | |"
        )
        print(
            f"| operator RSS idle -> with {running} in flight (peak) | {rss0:.0f} -> {rss:.0f} MiB ({peak:.0f} MiB) | < 200 MiB |"
        )
        print(f"| ratio latency / goal | {statistics.median(latencies) / 1.0:.2f} | <= 1 |")
        print(f"| ratio peak RSS / goal | {peak / 200:.2f} | <= 1 |")
    finally:
        if op is not None:
            op.stop()
        for ns in namespaces:
            release(kube, ns)
            cluster.delete_namespace(ns)
        api.close()
        if plane is not None:
            plane.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
