"""What the cluster's operator allows a spec author (pure): host paths and server images.

A `hostPath` model cache reaches the node's filesystem, and a server image runs with the GPUs: both are the
platform team's call, made in the operator's configuration (chart values ``policy.*``), not the spec's. A spec
that asks for more is refused before anything runs, with the reason and the setting that would allow it.
"""

from __future__ import annotations

import posixpath

from quantbench.api.v1alpha1 import QuantBenchmarkSpec
from quantbench.settings import OperatorSettings


def _under(path: str, prefix: str) -> bool:
    path, prefix = posixpath.normpath(path), posixpath.normpath(prefix)
    return prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def policy_problems(spec: QuantBenchmarkSpec, settings: OperatorSettings) -> list[str]:
    """Each way the spec goes beyond the operator's policy, naming the field and the setting."""
    problems: list[str] = []
    cache = spec.server.model_cache
    if cache is not None and cache.host_path is not None:
        host_path = cache.host_path
        if not settings.allow_host_path:
            problems.append(
                f"spec.server.modelCache.hostPath: a hostPath model cache ({host_path}) is not allowed by "
                "this operator's configuration (chart value policy.allowHostPath); use claimName instead"
            )
        elif settings.host_path_prefixes and not any(
            _under(host_path, p) for p in settings.host_path_prefixes
        ):
            allowed = ", ".join(settings.host_path_prefixes)
            problems.append(
                f"spec.server.modelCache.hostPath: {host_path} is outside the host paths this operator "
                f"allows ({allowed}; chart value policy.hostPathPrefixes)"
            )
    if settings.allowed_images:
        allowed = ", ".join(settings.allowed_images)
        for field, image in _server_images(spec):
            if not any(image.startswith(p) for p in settings.allowed_images):
                problems.append(
                    f"{field}: {image} is not from a registry or prefix this operator allows ({allowed}; "
                    "chart value policy.allowedImages)"
                )
    return problems


def _server_images(spec: QuantBenchmarkSpec) -> list[tuple[str, str]]:
    """(field, image) for every server image the spec names: server.image, server.cpuImage and each
    variant's own image (the operator's default CPU image is its configuration's, not the spec's)."""
    images = [("spec.server.image", spec.server.image)]
    if spec.server.cpu_image is not None:
        images.append(("spec.server.cpuImage", spec.server.cpu_image))
    images += [
        (f"spec.variants[{i}].image", v.image) for i, v in enumerate(spec.variants) if v.image is not None
    ]
    return images
