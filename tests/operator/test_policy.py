"""The operator's policy on host paths and server images (quantbench.policy)."""

from __future__ import annotations

from quantbench.policy import policy_problems
from quantbench.settings import OperatorSettings
from tests.operator import factories


def test_host_path_is_refused_unless_allowed_and_under_an_allowed_prefix() -> None:
    spec = factories.spec(server={"modelCache": {"hostPath": "/var/lib/models"}})
    (problem,) = policy_problems(spec, OperatorSettings())
    assert "spec.server.modelCache.hostPath" in problem and "policy.allowHostPath" in problem
    assert policy_problems(spec, OperatorSettings(allow_host_path=True)) == []
    only = OperatorSettings(allow_host_path=True, host_path_prefixes=["/models"])
    (outside,) = policy_problems(spec, only)
    assert "outside the host paths this operator allows (/models" in outside
    inside = factories.spec(server={"modelCache": {"hostPath": "/models/llama"}})
    assert policy_problems(inside, only) == []
    sneaky = factories.spec(server={"modelCache": {"hostPath": "/models/../etc"}})
    assert policy_problems(sneaky, only) and policy_problems(
        factories.spec(server={"modelCache": {"hostPath": "/models-x"}}), only
    )


def test_server_images_can_be_held_to_allowed_registries() -> None:
    settings = OperatorSettings.from_env({"QUANTBENCH_ALLOWED_IMAGES": '["registry.internal/vllm/"]'})
    (problem,) = policy_problems(factories.spec(), settings)
    assert "spec.server.image" in problem and "registry.internal/vllm/" in problem
    ok = factories.spec(server={"image": "registry.internal/vllm/vllm-openai:v0.11.0"})
    assert policy_problems(ok, settings) == []
    assert policy_problems(factories.spec(), OperatorSettings()) == []


def test_a_cpu_image_or_a_variants_own_image_is_held_to_the_same_registries() -> None:
    settings = OperatorSettings.from_env({"QUANTBENCH_ALLOWED_IMAGES": '["registry.internal/"]'})
    inside = "registry.internal/vllm/vllm-openai:v0.11.0"
    spec = factories.spec(
        server={"image": inside, "cpuImage": "elsewhere/vllm-cpu:1"},
        variants=[
            {"name": "bf16", "precision": "bf16"},
            {"name": "fp8", "precision": "fp8", "image": "x/y:1"},
        ],
    )
    problems = policy_problems(spec, settings)
    assert [p.split(":")[0] for p in problems] == ["spec.server.cpuImage", "spec.variants[1].image"]
