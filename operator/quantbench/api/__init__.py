"""The QuantBenchmark API (quantbench.dev/v1alpha1): models, CRD generation, spec loading."""
