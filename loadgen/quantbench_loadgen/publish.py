"""Write a result file into a ConfigMap key: how a benchmark Job hands its result to the operator.

    python -m quantbench_loadgen.publish --configmap NAME --key result.json FILE

Inside a pod it authenticates with the pod's service-account token and calls the Kubernetes API over HTTPS
(a JSON merge patch of ``data.<key>``); the Job's service account may update only the Job's own ConfigMap.
``--alongside FILE`` names what the ConfigMap already holds (the Job's input): the size check counts every
key, so a result that cannot fit is refused here with its size, not by the API server (``--hint`` says what
to ask for instead). ``--gzip`` writes the file gzip-compressed into ``binaryData.<key>.gz`` instead (a
fidelity reference: mostly log-probabilities, which compress ~3x).
``--part NAME`` (repeatable, in order) publishes a file that may need more than one ConfigMap (a sequential
baseline's responses: megabytes at GSM8K size): gzip-compressed, cut into pieces of at most ``PART_BYTES``
written to ``binaryData.<key>.gz`` of each named ConfigMap in turn, and the outcome recorded as JSON in the
``--configmap``'s annotation ``RESPONSES_ANNOTATION`` (the parts used, or why none was: too large for the
parts given, no file). Nothing it cannot publish is an error: a reader without the parts does without them.
``--server``, ``--token-file``, ``--ca-file`` and ``--namespace`` override the in-cluster defaults. Standard
library only: the Job image needs no Kubernetes client.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MAX_CONFIGMAP_BYTES = 1_000_000  # the API rejects ConfigMaps over 1 MiB in total
GZIP_SUFFIX = ".gz"  # binaryData.<key>.gz: the gzip-compressed result (--gzip)
DEFAULT_HINT = "ask for less (a lower accuracy.limit, fewer rates or iterations)"
# --part: bytes of the gzip-compressed file per ConfigMap (the rest of the 1 MiB: the key and the object)
PART_BYTES = MAX_CONFIGMAP_BYTES - 10_000
# --part: the annotation of --configmap that records how the file was published (JSON, see PartsRecord)
RESPONSES_ANNOTATION = "quantbench.dev/responses"


class PublishError(Exception):
    """The result could not be written; the message says why and what to check."""


@dataclass(frozen=True)
class Target:
    server: str
    namespace: str
    token: str
    ca_file: str | None


def in_cluster_target(
    server: str | None = None,
    namespace: str | None = None,
    token_file: str | None = None,
    ca_file: str | None = None,
) -> Target:
    if server is None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise PublishError("not in a pod (KUBERNETES_SERVICE_HOST unset): pass --server")
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    token_path = Path(token_file) if token_file else SA_DIR / "token"
    try:
        token = token_path.read_text().strip()
        if namespace is None:
            namespace = (SA_DIR / "namespace").read_text().strip()
    except OSError as exc:
        raise PublishError(f"cannot read the service-account token or namespace: {exc}") from None
    if ca_file is None and (SA_DIR / "ca.crt").is_file():
        ca_file = str(SA_DIR / "ca.crt")
    return Target(server=server.rstrip("/"), namespace=namespace, token=token, ca_file=ca_file)


def publish(
    target: Target,
    configmap: str,
    key: str,
    content: str,
    attempts: int = 5,
    alongside: dict[str, int] | None = None,
    compress: bool = False,
    hint: str = DEFAULT_HINT,
) -> None:
    """Set ``data[key]`` of the ConfigMap to ``content`` (``compress``: ``binaryData[key.gz]`` to it
    gzip-compressed); retries connection errors and 5xx answers.

    ``alongside``: the other keys the ConfigMap holds and their sizes in bytes, counted in the size check.
    """
    raw = content.encode()
    payload = gzip.compress(raw, mtime=0) if compress else raw
    stored = key + GZIP_SUFFIX if compress else key
    others = {k: n for k, n in (alongside or {}).items() if k != stored}
    total = len(stored) + len(payload) + sum(len(k) + n for k, n in others.items())
    if total > MAX_CONFIGMAP_BYTES:
        held = f" with {', '.join(others)} beside it" if others else ""
        size = (
            f"{len(payload)} bytes gzip-compressed ({len(raw)} as text)" if compress else f"{len(raw)} bytes"
        )
        raise PublishError(
            f"result is {size}{held} ({total} in all); a ConfigMap holds at most "
            f"~1 MiB ({MAX_CONFIGMAP_BYTES} bytes of data): {hint}"
        )
    if compress:
        body: dict[str, object] = {"binaryData": {stored: base64.b64encode(payload).decode()}}
    else:
        body = {"data": {key: content}}
    _patch(target, configmap, body, key, attempts)


def _patch(target: Target, configmap: str, patch: Mapping[str, object], what: str, attempts: int) -> None:
    """JSON merge patch of the ConfigMap; retries connection errors and 5xx answers."""
    url = f"{target.server}/api/v1/namespaces/{target.namespace}/configmaps/{configmap}"
    body = json.dumps(patch).encode()
    context = ssl.create_default_context(cafile=target.ca_file)
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url,
            data=body,
            method="PATCH",
            headers={
                "Authorization": f"Bearer {target.token}",
                "Content-Type": "application/merge-patch+json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                response.read()
                return
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            if exc.code < 500 or attempt == attempts:
                raise PublishError(
                    f"writing {what} to configmap {target.namespace}/{configmap} failed: HTTP {exc.code} {detail}"
                ) from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt == attempts:
                raise PublishError(
                    f"cannot reach the Kubernetes API at {target.server} (writing {what}): {exc}"
                ) from None
        time.sleep(min(2.0**attempt * 0.25, 5.0))


@dataclass(frozen=True)
class Parts:
    """A file cut into gzip-compressed pieces for ``--part`` ConfigMaps, and the record of it (`record`)."""

    chunks: list[bytes]  # in order; empty when the file is not published (``reason`` says why)
    raw_bytes: int
    gzip_bytes: int
    sha256: str  # of the gzip-compressed whole, the pieces joined
    reason: str | None = None

    def record(self) -> dict[str, object]:
        """What the annotation holds (quantbench_loadgen.accuracy.screening.PublishedResponses)."""
        out: dict[str, object] = {
            "parts": len(self.chunks),
            "bytes": self.raw_bytes,
            "gzipBytes": self.gzip_bytes,
        }
        if self.chunks:
            out["sha256"] = self.sha256
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def split_parts(content: bytes, parts: int, part_bytes: int = PART_BYTES) -> Parts:
    """``content`` gzip-compressed and cut into at most ``parts`` pieces of ``part_bytes`` (pure); none, with
    the reason, when it needs more."""
    payload = gzip.compress(content, mtime=0)
    digest = hashlib.sha256(payload).hexdigest()
    chunks = [payload[i : i + part_bytes] for i in range(0, len(payload), part_bytes)] or [payload]
    if len(chunks) > parts:
        reason = (
            f"{len(payload)} bytes gzip-compressed ({len(content)} as text) need {len(chunks)} ConfigMaps of "
            f"{part_bytes} bytes, {parts} were planned"
        )
        return Parts([], len(content), len(payload), digest, reason)
    return Parts(chunks, len(content), len(payload), digest)


def publish_parts(
    target: Target, configmap: str, names: Sequence[str], key: str, content: bytes | None, attempts: int = 5
) -> Parts:
    """Write ``content`` gzip-compressed into ``binaryData.<key>.gz`` of the ConfigMaps ``names`` in turn
    (as many as it needs), then record in ``configmap``'s annotation what was published or why nothing was
    (``content`` None: there was no file). Raises PublishError only when the record cannot be written."""
    if content is None:
        parts = Parts([], 0, 0, "", "the accuracy run wrote no responses file")
    else:
        parts = split_parts(content, len(names))
        for i, (name, chunk) in enumerate(zip(names, parts.chunks, strict=False)):
            body: dict[str, object] = {"binaryData": {key + GZIP_SUFFIX: base64.b64encode(chunk).decode()}}
            try:
                _patch(target, name, body, f"part {i} of {key}", attempts)
            except PublishError as exc:
                parts = Parts([], parts.raw_bytes, parts.gzip_bytes, parts.sha256, str(exc))
                break
    record = {"metadata": {"annotations": {RESPONSES_ANNOTATION: json.dumps(parts.record(), sort_keys=True)}}}
    _patch(target, configmap, record, f"annotation {RESPONSES_ANNOTATION}", attempts)
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m quantbench_loadgen.publish", description=__doc__.split("\n")[0]
    )
    p.add_argument("--configmap", required=True, help="ConfigMap to write into (pre-created by the operator)")
    p.add_argument("--key", required=True, help="data key, e.g. result.json")
    p.add_argument("file", type=Path, help="file whose content is written")
    p.add_argument("--server", help="API server URL (default: the in-cluster service)")
    p.add_argument("--namespace", help="namespace (default: the pod's)")
    p.add_argument("--token-file", help="bearer token file (default: the pod's service-account token)")
    p.add_argument("--ca-file", help="CA bundle of the API server (default: the pod's ca.crt)")
    p.add_argument(
        "--gzip",
        action="store_true",
        help=f"write the file gzip-compressed into binaryData.<key>{GZIP_SUFFIX} instead of data.<key>",
    )
    p.add_argument("--hint", default=DEFAULT_HINT, help="what the size error tells to ask for instead")
    p.add_argument(
        "--alongside",
        type=Path,
        action="append",
        default=[],
        help="a file the ConfigMap already holds under its own name (counted in the size check); repeatable",
    )
    p.add_argument(
        "--part",
        action="append",
        default=[],
        metavar="CONFIGMAP",
        help="publish the file gzip-compressed across these ConfigMaps (repeatable, in order) and record the "
        f"outcome in --configmap's annotation {RESPONSES_ANNOTATION}; a file missing or too large is recorded, "
        "not an error",
    )
    args = p.parse_args(argv)
    if args.part:
        return _main_parts(args)
    try:
        content = args.file.read_text(encoding="utf-8")
        alongside = {f.name: f.stat().st_size for f in args.alongside}
    except OSError as exc:
        print(f"error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        target = in_cluster_target(args.server, args.namespace, args.token_file, args.ca_file)
        publish(
            target, args.configmap, args.key, content, alongside=alongside, compress=args.gzip, hint=args.hint
        )
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.file} ({len(content.encode())} bytes{', gzip-compressed' if args.gzip else ''}) to "
        f"configmap {target.namespace}/{args.configmap} key {args.key}{GZIP_SUFFIX if args.gzip else ''}"
    )
    return 0


def _main_parts(args: argparse.Namespace) -> int:
    try:
        content: bytes | None = args.file.read_bytes()
    except FileNotFoundError:
        content = None
    except OSError as exc:
        print(f"error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        target = in_cluster_target(args.server, args.namespace, args.token_file, args.ca_file)
        parts = publish_parts(target, args.configmap, args.part, args.key, content)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if parts.reason is not None:
        print(f"{args.file} not published ({parts.reason}); recorded in configmap {args.configmap}")
    else:
        print(
            f"wrote {args.file} ({parts.raw_bytes} bytes, {parts.gzip_bytes} gzip-compressed) in "
            f"{len(parts.chunks)} part(s) to configmap(s) {', '.join(args.part[: len(parts.chunks)])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
