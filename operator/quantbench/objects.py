"""The shapes of the Kubernetes objects the operator reads and builds: the API's own JSON (camelCase dicts)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]  # any object as JSON; the shapes the pure modules read are typed below
