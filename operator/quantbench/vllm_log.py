"""What the vLLM server's log says: the memory its model weights took."""

from __future__ import annotations

import re

_WEIGHTS_PATTERNS = (
    re.compile(r"[Mm]odel loading took ([0-9.]+) ?GiB"),
    re.compile(r"model weights took ([0-9.]+) ?GiB"),
    re.compile(r"[Mm]odel weights took ([0-9.]+) ?GiB"),
)


def weights_gib_from_log(log: str) -> float | None:
    """Model weight memory from the vLLM server log ('Model loading took X GiB ...'); the last match wins."""
    found: float | None = None
    for line in log.splitlines():
        for pattern in _WEIGHTS_PATTERNS:
            m = pattern.search(line)
            if m:
                found = float(m.group(1))
                break
    return found
