"""The load-generator tests' scripted server, for the dashboard tests' live load."""

from tests.loadgen.conftest import scripted_server, scripted_tokenizer

__all__ = ["scripted_server", "scripted_tokenizer"]
