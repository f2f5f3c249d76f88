"""Token counting for datasets: a local ``tokenizer.json`` (the `tokenizers` package) or the server's own
``/tokenize`` and ``/detokenize`` endpoints (vLLM), so that prompt lengths are those the server will count."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from quantbench_loadgen.client import server_root


class Tokenizer(Protocol):
    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class LocalTokenizer:
    """A Hugging Face fast tokenizer read from ``tokenizer.json`` in a model folder (or the file itself)."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as HfTokenizer

        file = Path(path)
        if file.is_dir():
            file = file / "tokenizer.json"
        if not file.is_file():
            raise ValueError(f"no tokenizer.json at {path}: give a model folder that holds one")
        self._tok = HfTokenizer.from_file(str(file))

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=False))


class ServerTokenizer:
    """The server's tokenizer through vLLM's ``POST /tokenize`` and ``POST /detokenize``."""

    def __init__(self, url: str, model: str, *, timeout_s: float = 30.0, api_key: str | None = None) -> None:
        self._root = server_root(url)
        self._model = model
        self._timeout = timeout_s
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self._root + path, data=json.dumps(body).encode(), headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                out: dict[str, Any] = json.loads(resp.read())
                return out
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise RuntimeError(f"{self._root}{path} answered HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(
                f"cannot reach {self._root}{path} to count tokens ({exc}); pass --tokenizer MODEL_DIR instead"
            ) from exc

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        body = {"model": self._model, "prompt": text, "add_special_tokens": add_special_tokens}
        return [int(t) for t in self._post("/tokenize", body)["tokens"]]

    def decode(self, ids: list[int]) -> str:
        return str(self._post("/detokenize", {"model": self._model, "tokens": ids})["prompt"])
