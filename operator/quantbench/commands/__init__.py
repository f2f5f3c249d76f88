"""Sub-commands of the `quantbench` CLI, one module each (see quantbench.cli)."""
