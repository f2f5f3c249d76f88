"""Run the test control plane by hand.

python -m tests.cluster up      # start in the background (or reuse), print `export KUBECONFIG=...`
python -m tests.cluster env     # print `export KUBECONFIG=...` for the running one
python -m tests.cluster status  # components, pids and ports
python -m tests.cluster down    # stop every component
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


def cmd_up(workdir: Path) -> int:
    state = _running(workdir)
    if state is not None:
        print(f"# control plane already running (apiserver {state.server})", file=sys.stderr)
        print(_exports(state))
        return 0
    stale = read_state(workdir)
    if stale is not None:
        stop_detached(stale)
    try:
        state = ControlPlane(workdir=workdir, bin_dir=BIN_DIR, detach=True).start()
    except ControlPlaneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"# control plane up in {state.startup_seconds:.1f} s: apiserver {state.server}, logs in {workdir}/logs",
        file=sys.stderr,
    )
    print(_exports(state))
    return 0


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
    return 0 if set(alive) == set(state.pids) else 1


def cmd_down(workdir: Path) -> int:
    state = read_state(workdir)
    if state is None:
        print("# nothing to stop", file=sys.stderr)
        return 0
    stopped = stop_detached(state)
    (workdir / "state.json").unlink(missing_ok=True)
    print(f"# stopped: {', '.join(stopped) if stopped else 'nothing was running'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "env", "status"])
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="state directory (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    commands = {"up": cmd_up, "down": cmd_down, "env": cmd_env, "status": cmd_status}
    return commands[args.command](args.workdir.resolve())


if __name__ == "__main__":
    sys.exit(main())
