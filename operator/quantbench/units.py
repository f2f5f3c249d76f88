"""Units shared by the whole package."""

from __future__ import annotations

GIB = 1024**3  # bytes in a GiB: weight memory is reported in GiB, exported and compared in bytes
