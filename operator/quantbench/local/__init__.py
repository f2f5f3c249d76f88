"""The local executor: `quantbench run bench.yaml` on one machine, without Kubernetes."""
