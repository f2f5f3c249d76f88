"""What a screen costs against generating the answer on a GPU, for a Llama-3.1-8B-shaped model in BF16.

The vLLM CPU server (`make bench-screening`) cannot say this: on a CPU a prefill is as slow per token as a
decoding step, on a GPU it is not. Without vLLM on the GPU machine this times the two passes with PyTorch and
transformers on a randomly initialised model of the 8B shape (the weights do not change the time):
- a screen: one forward over prompt + answer, with the top 2 log-probabilities of every answer position;
- a generation: the prompt's prefill, then one greedy decoding step per answer token (KV cache);
at batch 1, 8 and 32 (questions screened or generated together). It prints milliseconds per question of each
and their ratio, the cost of a screen in generations that the sequential design's simulation takes
(`tests/loadgen/sequential_figures.py`). transformers' decoding runs each step eagerly, slower than vLLM's
CUDA graphs, so the script also prints the ratio with the decoding steps at a given vLLM figure
(--vllm-ms-per-token, default the seed's 7.07 ms/token at batch 1 on an H100). Needs only torch and transformers:

    python tests/accuracy/bench_screening_gpu.py [--prompt 850] [--answer 130] [--batches 1 8 32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any


def _timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _row(model: Any, vocab: int, batch: int, args: argparse.Namespace) -> str:
    """One table row: both passes timed at `batch` questions together."""
    import torch

    prompt = torch.randint(0, vocab, (batch, args.prompt), device="cuda")
    full = torch.randint(0, vocab, (batch, args.prompt + args.answer), device="cuda")

    @torch.inference_mode()
    def screen() -> Any:
        logits = model(full, use_cache=False, logits_to_keep=args.answer + 1).logits
        return torch.log_softmax(logits.float(), dim=-1).topk(2, dim=-1)

    @torch.inference_mode()
    def prefill() -> Any:
        return model(prompt, use_cache=True, logits_to_keep=1)

    @torch.inference_mode()
    def generate() -> Any:
        out = prefill()
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(args.answer - 1):
            out = model(token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        return token

    sync = torch.cuda.synchronize
    screen_s = _timed(screen, 5, sync)
    prefill_s = _timed(prefill, 5, sync)
    generate_s = _timed(generate, 3, sync)
    step_s = (generate_s - prefill_s) / max(1, args.answer - 1)
    # vLLM's decoding stays near its batch-1 step time per step while memory-bound (small batches)
    vllm_generate_s = prefill_s + (args.answer - 1) * args.vllm_ms_per_token / 1000
    return (
        f"| {batch} | {screen_s / batch * 1000:.1f} | {generate_s / batch * 1000:.1f} | {step_s * 1000:.2f} | "
        f"{screen_s / generate_s:.3f} | {screen_s / vllm_generate_s:.3f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=850, help="prompt tokens (GSM8K 8-shot: about 850)")
    parser.add_argument("--answer", type=int, default=130, help="answer tokens")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--vllm-ms-per-token", type=float, default=7.07)
    args = parser.parse_args(argv)

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    print(f"{torch.cuda.get_device_name()}; Llama-3.1-8B shape, BF16, random weights; prompt {args.prompt}, "
          f"answer {args.answer} tokens")  # fmt: skip
    print(
        "| batch | screen ms/question | generate ms/question | decode ms/step | screen cost | with vLLM decode |"
    )
    print("|---|---|---|---|---|---|")
    for batch in args.batches:
        print(_row(model, config.vocab_size, batch, args), flush=True)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
