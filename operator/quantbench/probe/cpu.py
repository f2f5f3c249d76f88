"""The CPU's streaming read bandwidth, for the floors of a run served on the CPU (vLLM's CPU backend).

The same method as the GPU probe's `torch-sum-read`: torch sums a float32 buffer far larger than the last-level
cache, with every thread torch uses (as vLLM's CPU backend does), and the median of many timed sums is a pass.
Every figure is taken in two passes so their difference shows the noise. torch is imported inside the function
(the vLLM environment has it; the operator's does not).

    python -m quantbench.probe.cpu --out bandwidth.json     # prints and writes a probe `Bandwidth`
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from quantbench.probe.result import Bandwidth

DEFAULT_BUFFER_BYTES = 512 * 2**20  # far beyond any CPU's last-level cache; quick to fill
METHOD = "cpu-torch-sum-read"


def measure_cpu_read_bandwidth(
    buffer_bytes: int = DEFAULT_BUFFER_BYTES, repeats: int = 15, passes: int = 2
) -> Bandwidth:
    """Bytes/s read by torch.sum over `buffer_bytes` of float32, per pass (median of `repeats` sums)."""
    import torch

    n = buffer_bytes // 4
    x = torch.randn(n, dtype=torch.float32)
    moved = n * 4
    for _ in range(3):  # warm-up: page faults, thread pool start
        torch.sum(x)
    rates: list[float] = []
    for _ in range(passes):
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.sum(x)
            samples.append(time.perf_counter() - start)
        rates.append(moved / statistics.median(samples))
    return Bandwidth(
        method=f"{METHOD} ({torch.get_num_threads()} threads)",
        buffer_bytes=moved,
        bytes_per_run=moved,
        passes_bytes_per_s=tuple(rates),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quantbench.probe.cpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the Bandwidth as JSON")
    parser.add_argument("--buffer-mib", type=int, default=DEFAULT_BUFFER_BYTES // 2**20, help="buffer size")
    args = parser.parse_args(argv)
    if args.buffer_mib < 64:
        parser.error("--buffer-mib must be at least 64: a smaller buffer is read from the CPU's caches")
    bandwidth = measure_cpu_read_bandwidth(args.buffer_mib * 2**20)
    args.out.write_text(bandwidth.model_dump_json(indent=2) + "\n")
    print(f"CPU streaming read: {bandwidth.bytes_per_s / 1e9:.2f} GB/s ({bandwidth.method})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
