"""Kernel sanity: did a variant run a slower kernel than its GPU supports? (pure)

vLLM's legacy AWQ and GPTQ kernels (``--quantization awq`` / ``gptq``) dequantize into a separate matmul and
fall far behind the Marlin kernels (``awq_marlin`` / ``gptq_marlin``) once more than a few requests share a
step; Marlin needs compute capability 8.0 (Ampere) or newer. A variant forced onto the legacy kernel on such
a GPU measures the kernel, not the precision: the summary says so, with the fix, instead of blaming the
precision.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantbench.gpus import MIN_KERNEL_CAPABILITY
from quantbench.probe.specs import compute_capability, match_gpu_spec

# legacy kernel -> the faster kernel for the same checkpoints (its minimum compute capability: gpus.py)
FASTER_KERNEL: dict[str, str] = {"awq": "awq_marlin", "gptq": "gptq_marlin"}


@dataclass(frozen=True)
class KernelAdvice:
    ran: str
    better: str
    gpu: str
    compute_capability: str

    def evidence(self) -> str:
        return (
            f"the server ran the legacy {self.ran} kernel, but this GPU ({self.gpu}, compute capability "
            f"{self.compute_capability}) runs {self.better}, which keeps quantized weights fast at larger "
            f"batches: these speed figures measure the kernel, not the precision"
        )

    def fix(self) -> str:
        return (
            f"remove quantizationKernel: {self.ran} from the variant (or set {self.better}) and run again "
            "before judging the precision's speed"
        )


def slower_kernel(kernel: str | None, gpu: str | None) -> KernelAdvice | None:
    """Advice when ``kernel`` is a legacy kernel and ``gpu`` (as its driver names it) runs the faster one."""
    if kernel is None or gpu is None or kernel not in FASTER_KERNEL:
        return None
    spec, cc = match_gpu_spec(gpu), compute_capability(gpu)
    if spec is None or cc is None:
        return None
    better = FASTER_KERNEL[kernel]
    if cc < MIN_KERNEL_CAPABILITY[better]:
        return None
    return KernelAdvice(ran=kernel, better=better, gpu=spec.name, compute_capability=spec.compute_capability)
