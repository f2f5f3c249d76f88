"""What runs inside QuantBench benchmark Jobs: load generator and accuracy runner."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("quantbench-loadgen")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
