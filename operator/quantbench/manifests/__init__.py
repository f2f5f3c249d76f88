"""Pure builders of the Kubernetes objects a QuantBenchmark run creates (plain dicts, ready to apply)."""
