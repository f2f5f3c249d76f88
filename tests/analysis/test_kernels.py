"""Kernel sanity: which kernels are slower than the GPU supports."""

from __future__ import annotations

import pytest

from quantbench.analysis.kernels import slower_kernel


@pytest.mark.parametrize(
    ("kernel", "gpu", "better"),
    [
        ("awq", "NVIDIA H100 80GB HBM3", "awq_marlin"),
        ("gptq", "NVIDIA A100-SXM4-80GB", "gptq_marlin"),
        ("awq", "NVIDIA L4", "awq_marlin"),
    ],
)
def test_legacy_kernels_on_ampere_or_newer(kernel: str, gpu: str, better: str) -> None:
    advice = slower_kernel(kernel, gpu)
    assert advice is not None and advice.better == better
    assert better in advice.fix() and f"quantizationKernel: {kernel}" in advice.fix()


@pytest.mark.parametrize(
    ("kernel", "gpu"),
    [
        ("awq_marlin", "NVIDIA H100 80GB HBM3"),  # already the fast one
        ("awq", None),  # no GPU: the CPU backend only has the legacy kernel
        ("awq", "Tesla T4"),  # not in the GPU table: no claim
        (None, "NVIDIA H100 80GB HBM3"),
    ],
)
def test_no_advice_without_a_better_kernel(kernel: str | None, gpu: str | None) -> None:
    assert slower_kernel(kernel, gpu) is None
