"""The accuracy runner: GSM8K through lm-eval against a variant's OpenAI-compatible server, offline.

- `task`: the shipped lm-eval task (gsm8k_local.yaml) pointed at a local GSM8K folder.
- `runner`: runs lm-eval's local-completions model and builds the result (needs the `accuracy` extra).
- `results`: `AccuracyResult`, with every question's outcome for paired tests.
- `cli`: ``python -m quantbench_loadgen.accuracy``.
"""
