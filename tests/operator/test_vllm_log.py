from __future__ import annotations

import pytest

from quantbench.vllm_log import weights_gib_from_log


def test_weights_from_log() -> None:
    log = "\n".join(
        [
            "INFO 11-23 03:00:01 [gpu_model_runner.py:1953] Model loading took 15.0640 GiB and 4.2 seconds",
            "INFO something else",
        ]
    )
    assert weights_gib_from_log(log) == pytest.approx(15.064)
    assert weights_gib_from_log(
        "INFO worker.py:267] model weights took 5.37GiB; non_torch_memory ..."
    ) == pytest.approx(5.37)
    assert weights_gib_from_log("nothing here") is None
