"""Build (or reuse) a model's precisions under one folder, with manifest.json saying what is there.

A build is reused while its fingerprint (factory version, model spec, tokenizer or calibration text) matches;
otherwise the folder's models are rebuilt. Precisions missing from a matching build are added. A file
lock makes concurrent test sessions wait for one builder instead of racing."""

from __future__ import annotations

import fcntl
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.models.corpus import corpus_fingerprint, gsm8k_train_path
from tests.models.manifest import FACTORY_VERSION, Manifest, ModelSpec, Precision, TinyLlamaSpec


@contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_models(
    out_dir: Path,
    precisions: Iterable[Precision],
    gsm8k_dir: str | Path | None = None,
    spec: ModelSpec | None = None,
    force: bool = False,
) -> Manifest:
    spec = spec or TinyLlamaSpec()
    wanted = list(dict.fromkeys(precisions))
    train = gsm8k_train_path(gsm8k_dir)
    corpus_sha = corpus_fingerprint(train)
    fingerprint = spec.fingerprint(corpus_sha)
    with _locked(out_dir):
        manifest = Manifest.load(out_dir)
        if force or manifest is None or manifest.fingerprint != fingerprint:
            if manifest is not None:
                for built in manifest.models.values():
                    shutil.rmtree(out_dir / built.path, ignore_errors=True)
            manifest = Manifest(
                factory_version=FACTORY_VERSION,
                fingerprint=fingerprint,
                spec=spec,
                corpus=str(train) if train else "built-in",
                corpus_sha256=corpus_sha,
            )
        missing = [
            p for p in wanted if p not in manifest.models or not (out_dir / manifest.models[p].path).is_dir()
        ]
        if not missing:
            return manifest
        from tests.models.factory import ModelFactory  # torch is imported only when building

        factory = ModelFactory.for_spec(spec, train, out_dir / "source")
        for precision in missing:
            built = factory.write(precision, out_dir / precision.value)
            manifest.models[precision] = built
            manifest.save(out_dir)
            print(
                f"built {precision.value}: {out_dir / built.path} "
                f"({built.size_bytes / 2**20:.1f} MiB, {built.build_seconds:.1f} s)",
                file=sys.stderr,
            )
        return manifest
