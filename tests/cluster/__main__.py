"""Run the test control plane by hand.

python -m tests.cluster up      # start in the background (or reuse), print `export KUBECONFIG=...`
python -m tests.cluster up --node   # ... with a real node (kubelet, containerd) beside the kwok pools
python -m tests.cluster env     # print `export KUBECONFIG=...` for the running one
python -m tests.cluster status  # components, pids and ports
python -m tests.cluster down    # stop every component (and the real node, removing what it made)
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tests.cluster.controlplane import (
    BIN_DIR,
    WORK_ROOT,
    ControlPlane,
    ControlPlaneError,
    State,
    read_state,
    running_pids,
    stop_detached,
)
from tests.cluster.node.node import NodeError, RealNode, cgroup_pids, read_node_state
from tests.cluster.node.node import cleanup as cleanup_node

DEFAULT_WORKDIR = WORK_ROOT / "manual"


def _exports(state: State) -> str:
    return (
        f"export KUBECONFIG={shlex.quote(state.kubeconfig)}\nexport PATH={shlex.quote(state.bin_dir)}:$PATH"
    )


def _running(workdir: Path) -> State | None:
    state = read_state(workdir)
    if state is None:
        return None
    return state if set(running_pids(state)) == set(state.pids) else None


def _node_up(state: State, workdir: Path) -> int:
    running = read_node_state(workdir / "node")
    if running is not None and cgroup_pids(running.cgroup):
        print(f"# real node {running.node_name} already running ({running.netns})", file=sys.stderr)
        return 0
    try:
        node = RealNode(cluster_workdir=workdir, server=state.server, bin_dir=BIN_DIR, detach=True).start()
    except NodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"# real node {node.node_name} Ready in {node.ready_seconds:.1f} s, logs in {workdir}/node/logs",
        file=sys.stderr,
    )
    return 0


def cmd_up(workdir: Path, node: bool = False) -> int:
    state = _running(workdir)
    if state is not None:
        print(f"# control plane already running (apiserver {state.server})", file=sys.stderr)
    else:
        stale = read_state(workdir)
        if stale is not None:
            _node_down(workdir)
            stop_detached(stale)
        try:
            state = ControlPlane(workdir=workdir, bin_dir=BIN_DIR, detach=True).start()
        except ControlPlaneError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(
            f"# control plane up in {state.startup_seconds:.1f} s: apiserver {state.server}, "
            f"logs in {workdir}/logs",
            file=sys.stderr,
        )
    if node and _node_up(state, workdir) != 0:
        return 1
    print(_exports(state))
    return 0


def _node_down(workdir: Path) -> bool:
    node = read_node_state(workdir / "node")
    if node is None:
        return False
    cleanup_node(node)
    return True


def cmd_env(workdir: Path) -> int:
    state = _running(workdir)
    if state is None:
        print("error: no control plane running; start one with `make cluster-up`", file=sys.stderr)
        return 1
    print(_exports(state))
    return 0


def cmd_status(workdir: Path) -> int:
    state = read_state(workdir)
    if state is None:
        print("not running")
        return 1
    alive = running_pids(state)
    for name, pid in state.pids.items():
        print(f"{name:24} pid {pid:<8} {'running' if name in alive else 'stopped'}")
    print(f"apiserver {state.server}  kubeconfig {state.kubeconfig}")
    node = read_node_state(workdir / "node")
    if node is not None:
        running = bool(cgroup_pids(node.cgroup))
        print(
            f"real node {node.node_name:14} {'running' if running else 'stopped'}  "
            f"netns {node.netns}  cgroup {node.cgroup}  ({len(cgroup_pids(node.cgroup))} processes)"
        )
    return 0 if set(alive) == set(state.pids) else 1


def cmd_down(workdir: Path) -> int:
    state = read_state(workdir)
    if state is None:
        print("# nothing to stop", file=sys.stderr)
        return 0
    node = _node_down(workdir)
    stopped = stop_detached(state)
    (workdir / "state.json").unlink(missing_ok=True)
    if node:
        stopped.insert(0, "real node")
    print(f"# stopped: {', '.join(stopped) if stopped else 'nothing was running'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "env", "status"])
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="state directory (default: %(default)s)"
    )
    parser.add_argument(
        "--node", action="store_true", help="up: also start the real node (needs root; make node-setup)"
    )
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if args.command == "up":
        return cmd_up(workdir, node=args.node)
    commands = {"down": cmd_down, "env": cmd_env, "status": cmd_status}
    return commands[args.command](workdir)


if __name__ == "__main__":
    sys.exit(main())
