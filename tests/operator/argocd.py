"""Running the chart's Argo CD health check (Lua) on a QuantBenchmark object with Debian's Lua interpreter,
the way Argo CD runs it: the object as the global ``obj``, the script's return value the health."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO / "charts" / "quantbench" / "files" / "argocd" / "health.lua"


def lua_interpreter() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("lua5.4", "lua5.3", "lua5.1", "lua")) if p), None)


def lua_literal(value: Any) -> str:
    """A JSON value as a Lua table constructor (JSON null: nil, i.e. the field is absent, as in Argo CD)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # quotes and backslash escapes as Lua reads them
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items() if v is not None)
            + "}"
        )
    raise TypeError(f"not a JSON value: {value!r}")


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) of the health check on ``obj``."""
    lua = lua_interpreter()
    if lua is None:
        raise RuntimeError("no Lua interpreter: apt-get install lua5.4")
    program = (
        f"obj = {lua_literal(obj)}\n"
        f"local function check()\n{HEALTH_LUA.read_text()}\nend\n"
        "local hs = check()\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    out = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, check=True, timeout=30)
    status, _, message = out.stdout.partition("\n")
    return status, message
