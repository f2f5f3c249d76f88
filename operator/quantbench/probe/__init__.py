"""GPU roofline probe: the physical floor of each precision on the GPU a model will be served on.

``quantbench probe --model-config config.json`` derives one decode step's linear-layer shapes from
the model's HF config, measures the GPU's streaming read bandwidth, times the step at batch sizes
1 ... 4096 in BF16, FP8 and 4-bit weight-only, and reports floors (weight bytes / bandwidth), measured
step times and each precision's crossover batch size against BF16 as a ``ProbeResult``.

Importing this package needs only pydantic: torch is imported lazily by ``quantbench.probe.measure``.
"""

from __future__ import annotations

from .crossover import Crossover, find_crossover
from .floors import memory_floor_seconds, step_floor_seconds, weight_bytes
from .precisions import BASELINE, PRECISIONS, WEIGHT_FORMATS, WeightFormatName
from .references import load_reference, reference_names
from .result import PrecisionResult, ProbeResult, StepTiming
from .shapes import ModelConfigError, ModelShape, derive_shape, load_model_config
from .specs import GPU_SPECS, GpuSpec, gpu_spec_by_key, match_gpu_spec

__all__ = [
    "BASELINE",
    "GPU_SPECS",
    "PRECISIONS",
    "WEIGHT_FORMATS",
    "Crossover",
    "GpuSpec",
    "ModelConfigError",
    "ModelShape",
    "PrecisionResult",
    "ProbeResult",
    "StepTiming",
    "WeightFormatName",
    "derive_shape",
    "find_crossover",
    "gpu_spec_by_key",
    "load_model_config",
    "load_reference",
    "match_gpu_spec",
    "memory_floor_seconds",
    "reference_names",
    "step_floor_seconds",
    "weight_bytes",
]
