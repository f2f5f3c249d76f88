"""Operator benchmark (`make bench-operator`): prints figures, asserts nothing.

The cluster also holds 2,000 objects that are not the operator's (1,000 ConfigMaps and 1,000 pods in a
namespace of their own, the pods held Pending by a scheduling gate so nothing runs them): the operator
watches its children through a label selector and must not pay for them.

1. Latency from `apply` (the QuantBenchmark POST) to all first-step servers created (every variant's
   Deployment of a three-variant run exists), measured by polling the API every 10 ms: N repetitions on an
   idle operator, then N more with 50 runs in flight, started just before (p50, p95, max). Beside each: the
   apiserver's own mean request latency over the same time (its /metrics, every client, watches left out),
   and under load the operator's passes with their mean wall time and the part spent waiting for API
   answers, so that the operator's own share can be told from an apiserver saturated by the machine.
2. The operator's CPU, memory and API requests with 200 QuantBenchmarks in flight across 5 namespaces
   (3 variants each on the 16-GPU h100 pool, so 16 servers run and the others wait for GPUs): CPU seconds
   over a window, mean CPU %, RSS and peak RSS (from /proc of the operator process), and API requests per
   reconcile pass (the operator's own counters, logged with QUANTBENCH_STATS_SECONDS), with per pass its
   wall time, its wait for API answers and the operator's CPU.

Goals (issue 14): apply -> servers p95 under 1 s with 50 runs in flight; RSS under the chart's memory
limit (256 MiB).

Starts its own control plane (tests/cluster), or uses QUANTBENCH_TEST_KUBECONFIG when set.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
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


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def create_unrelated(kube: Kube, ns: str, count: int) -> int:
    """``count`` objects the operator has no business with: half ConfigMaps, half pods held by a scheduling
    gate (no scheduler or kwok work, but they are in every unfiltered pod watch)."""
    objects = []
    for i in range(count // 2):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"unrelated-{i:04d}", "namespace": ns, "labels": {"app": "other"}},
                "data": {"payload": "x" * 512},
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"unrelated-{i:04d}", "namespace": ns, "labels": {"app": "other"}},
                "spec": {
                    "schedulingGates": [{"name": "quantbench.dev/bench-hold"}],
                    "containers": [{"name": "c", "image": "busybox"}],
                },
            }
        )
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return sum(1 for made in pool.map(kube.create, objects) if made)


def apply_to_servers(kube: Kube, namespaces: list[str], prefix: str, repeats: int) -> list[float]:
    """Seconds from each QuantBenchmark POST to its three servers' Deployments existing (then deleted)."""
    out = []
    for i in range(repeats):
        name = f"{prefix}-{i}"
        ns = namespaces[i % len(namespaces)]
        t0 = time.perf_counter()
        create(kube, ns, name)
        sel = selector({LABEL_BENCHMARK: name})
        while len(kube.list("Deployment", ns, sel)) < 3:
            time.sleep(0.01)
        out.append(time.perf_counter() - t0)
        kube.delete("QuantBenchmark", ns, name)
        wait_for(partial(gone, kube, ns, name), 30, "deleted")
    return out


def wait_running(kube: Kube, namespaces: list[str], count: int) -> int:
    def running() -> int | None:
        n = sum(
            1
            for ns in namespaces
            for b in kube.list("QuantBenchmark", ns)
            if (b.get("status") or {}).get("currentRun") and b["metadata"]["name"].startswith("load-")
        )
        return n if n >= count else None

    return wait_for(running, 600, f"{count} benchmarks running")


STATS = re.compile(
    r"operator stats: reconciles=(\d+) api_requests=(\d+)(?: benchmarks=\d+ reconcile_s=([\d.]+) api_s=([\d.]+))?"
)


def last_stats(op: OperatorProcess) -> tuple[int, int, float, float]:
    """Reconcile passes, API requests, seconds in reconciles and seconds waiting for API answers so far."""
    found = STATS.findall(op.logs())
    if not found:
        return (0, 0, 0.0, 0.0)
    passes, requests, reconcile_s, api_s = found[-1]
    return (int(passes), int(requests), float(reconcile_s or "nan"), float(api_s or "nan"))


REQUEST_DURATION = re.compile(r"^apiserver_request_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$", re.M)


def apiserver_requests(kube: Kube) -> tuple[float, float]:
    """The apiserver's own figures (its /metrics), every client together: seconds spent on requests and
    their count, watches left out (they last as long as the watch)."""
    text = kube.request("GET", "/metrics")
    seconds = count = 0.0
    for kind, labels, value in REQUEST_DURATION.findall(text):
        if 'verb="WATCH"' in labels:
            continue
        if kind == "sum":
            seconds += float(value)
        else:
            count += float(value)
    return seconds, count


def mean_ms(before: tuple[float, float], after: tuple[float, float]) -> str:
    seconds, count = after[0] - before[0], after[1] - before[1]
    return f"{1000 * seconds / count:.1f} ms over {count:.0f} requests" if count else "no requests"


def ms(values: list[float]) -> str:
    """p50 / p95 / max in ms."""
    return f"{statistics.median(values) * 1000:.0f} / {p95(values) * 1000:.0f} / {max(values) * 1000:.0f} ms"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=20, help="latency measurements (each: idle, under load)")
    p.add_argument("--in-flight", type=int, default=50, help="runs in flight for the latency under load")
    p.add_argument("--benchmarks", type=int, default=200, help="QuantBenchmarks in flight for CPU/RSS")
    p.add_argument("--unrelated", type=int, default=2000, help="objects that are not the operator's")
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
        unrelated_ns = cluster.create_namespace(f"bench-{int(time.time())}-unrelated")
        namespaces.append(unrelated_ns)
        t_unrelated = time.perf_counter()
        made = create_unrelated(kube, unrelated_ns, args.unrelated)
        print(f"{made} unrelated objects created in {time.perf_counter() - t_unrelated:.0f} s")
        namespaces = namespaces[-1:] + namespaces[:-1]  # keep the unrelated one out of the rotation below
        served = namespaces[1:]
        env = {"QUANTBENCH_RESYNC_SECONDS": "10", "QUANTBENCH_STATS_SECONDS": "5"}
        op = OperatorProcess(cluster, None, workdir, env=env).start()
        # Wait for the operator to be up: it answers a first benchmark.
        create(kube, served[0], "warmup")
        wait_for(
            lambda: len(kube.list("Deployment", served[0], selector({LABEL_BENCHMARK: "warmup"}))) == 3,
            60,
            "warm-up run",
        )
        kube.delete("QuantBenchmark", served[0], "warmup")
        wait_for(lambda: kube.get("QuantBenchmark", served[0], "warmup") is None, 30, "warm-up deleted")

        api0 = apiserver_requests(kube)
        latencies = apply_to_servers(kube, served, "lat", args.repeats)
        api1 = apiserver_requests(kube)
        assert op.proc is not None
        pid = op.proc.pid
        rss0, _ = memory_mib(pid)

        # Latency with runs in flight.
        for i in range(args.in_flight):
            create(kube, served[i % len(served)], f"load-{i:03d}")
        wait_running(kube, served, args.in_flight)
        api2, op2, cpu2, w2 = apiserver_requests(kube), last_stats(op), cpu_seconds(pid), time.perf_counter()
        loaded = apply_to_servers(kube, served, "busy", args.repeats)
        api3, cpu3, w3 = apiserver_requests(kube), cpu_seconds(pid), time.perf_counter()
        time.sleep(6)  # one more stats line
        op3 = last_stats(op)

        t_create = time.perf_counter()
        for i in range(args.in_flight, args.benchmarks):
            create(kube, served[i % len(served)], f"load-{i:03d}")
        running = wait_running(kube, served, args.benchmarks)
        settle = time.perf_counter() - t_create
        stats0 = last_stats(op)
        cpu0, w0 = cpu_seconds(pid), time.perf_counter()
        time.sleep(args.window)
        cpu1, w1 = cpu_seconds(pid), time.perf_counter()
        time.sleep(6)  # one more stats line
        stats1 = last_stats(op)
        rss, peak = memory_mib(pid)
        passes = stats1[0] - stats0[0]
        per_pass = (stats1[1] - stats0[1]) / passes if passes else float("nan")
        servers = sum(len(kube.list("Deployment", ns)) for ns in served)
        waiting = sum(
            1
            for ns in served
            for b in kube.list("QuantBenchmark", ns)
            for v in (b.get("status") or {}).get("variants") or []
            if v.get("phase") == "WaitingForGPU"
        )
        op.assert_alive()
        print()
        print("| figure | value | goal |")
        print("|---|---|---|")
        print(f"| objects in the cluster that are not the operator's | {made} | |")
        print(
            f"| apply -> all 3 first-step servers created, idle operator, p50 / p95 / max of {len(latencies)} | "
            f"{ms(latencies)} | |"
        )
        print(
            f"| apiserver request latency meanwhile (mean, all clients, no watches) | {mean_ms(api0, api1)} | |"
        )
        print(
            f"| apply -> servers with {args.in_flight} runs in flight, p50 / p95 / max of {len(loaded)} | "
            f"{ms(loaded)} | p95 < 1000 ms |"
        )
        print(
            f"| apiserver request latency meanwhile (mean, all clients, no watches) | {mean_ms(api2, api3)} | |"
        )
        passes_l = op3[0] - op2[0]
        if passes_l:
            print(
                f"| operator meanwhile: passes, mean pass, of it waiting for API answers | {passes_l}, "
                f"{1000 * (op3[2] - op2[2]) / passes_l:.0f} ms, {1000 * (op3[3] - op2[3]) / passes_l:.0f} ms "
                "(API time includes the creates and Events a pass fans out in parallel) | |"
            )
        print(
            f"| operator CPU meanwhile | {cpu3 - cpu2:.2f} s over {w3 - w2:.0f} s "
            f"({100 * (cpu3 - cpu2) / (w3 - w2):.0f}% of one core) | |"
        )
        print(
            f"| {running} QuantBenchmarks in flight ({len(served)} namespaces): all runs started after | {settle:.1f} s | |"
        )
        print(
            f"| reconcile passes / API requests over the window | {passes} / {stats1[1] - stats0[1]} "
            f"({per_pass:.1f} requests per pass) | |"
        )
        if passes:
            print(
                f"| per pass over the window: wall, waiting for API answers, operator CPU | "
                f"{1000 * (stats1[2] - stats0[2]) / passes:.0f} ms, {1000 * (stats1[3] - stats0[3]) / passes:.0f} ms, "
                f"{1000 * (cpu1 - cpu0) / passes:.1f} ms | |"
            )
        print(f"| servers created / variants waiting for GPUs | {servers} / {waiting} | |")
        print(
            f"| operator CPU over {w1 - w0:.0f} s with {running} in flight | {cpu1 - cpu0:.2f} s "
            f"({100 * (cpu1 - cpu0) / (w1 - w0):.1f}% of one core) | |"
        )
        print(
            f"| operator RSS idle -> with {running} in flight (peak) | {rss0:.0f} -> {rss:.0f} MiB ({peak:.0f} MiB) | < 256 MiB |"
        )
        print(f"| ratio p95 latency under load / goal | {p95(loaded) / 1.0:.2f} | <= 1 |")
        print(f"| ratio peak RSS / goal | {peak / 256:.2f} | <= 1 |")
    finally:
        if op is not None:
            op.stop()
        for ns in namespaces:
            release(kube, ns)
            cluster.delete_namespace(ns)
        api.close()
        if plane is not None:
            plane.stop()
            shutil.rmtree(workdir, ignore_errors=True)  # its etcd data and logs: ~120 MB a run
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
