"""QuantBench: declarative precision comparisons for LLM serving."""
