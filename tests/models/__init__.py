"""Tiny local models for tests and the local demo: a seeded random Llama with a locally trained BPE
tokenizer, in BF16, AWQ INT4 and INT8 W8A8 checkpoints (see build.py; CLI: python -m tests.models)."""
