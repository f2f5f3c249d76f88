from __future__ import annotations

import pytest

from quantbench.settings import OperatorSettings


def test_settings_from_env() -> None:
    s = OperatorSettings.from_env(
        {"QUANTBENCH_JOB_IMAGE": "img:1", "QUANTBENCH_SERVER_POD_ANNOTATIONS": '{"a": "b"}', "OTHER": "x"}
    )
    assert s.job_image == "img:1" and s.server_pod_annotations == {"a": "b"} and s.resync_seconds == 10
    prices = OperatorSettings.from_env({"QUANTBENCH_GPU_HOUR_PRICES": '{"h100": 4.1, "*": 2.5}'})
    assert prices.gpu_hour_prices == {"h100": 4.1, "*": 2.5}


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(ValueError, match="QUANTBENCH_"):
        OperatorSettings.from_env({"QUANTBENCH_RESYNC_SECONDS": "-1"})
    with pytest.raises(ValueError, match="QUANTBENCH_"):
        OperatorSettings.from_env({"QUANTBENCH_SERVER_POD_ANNOTATIONS": "{not json"})
    with pytest.raises(ValueError, match="GPU-hour prices must be >= 0"):
        OperatorSettings.from_env({"QUANTBENCH_GPU_HOUR_PRICES": '{"h100": -1}'})
