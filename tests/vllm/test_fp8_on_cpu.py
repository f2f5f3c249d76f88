"""FP8 is a GPU-only precision: vLLM's CPU build accepts `--quantization fp8` but has no FP8 kernels,
and the server dies while quantizing the weights at load (`_C::static_scaled_fp8_quant` is not built for
CPU). This test pins that documented behaviour, so the CPU test matrix leaves fp8 out knowingly; if a
later vLLM CPU gains FP8, it fails and fp8 can join the served precisions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quantbench.local.server import ServerStartError
from tests.fixtures.vllm import VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]


def test_fp8_server_fails_at_first_fp8_op_on_cpu(vllm_server: Callable[[str], VllmServer]) -> None:
    with pytest.raises(ServerStartError, match=r"exited with code") as err:
        vllm_server("fp8")
    assert "scaled_fp8_quant" in str(err.value), str(err.value)[-2000:]
