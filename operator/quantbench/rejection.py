"""Children the API server refuses, in words a person can act on (pure functions).

A create that the API server answers with 400, 403 or 422 will be answered the same way on every retry: a
field the CRD allows but the child's own validation refuses (an affinity passed through as written), a
ResourceQuota, an admission policy. Such a refusal ends what the child belongs to — its variant, its probe,
or the run for a run-wide object — with the API's message; it is never retried in a loop. A 409 is success
only when the object that exists is this run's own (same owner, same labels): a name held by anything else
is a refusal too.
"""

from __future__ import annotations

import json
from typing import Any

from quantbench.failures import Failure, Reason
from quantbench.naming import LABEL_RUN, LABEL_STEP, LABEL_VARIANT

REFUSED_STATUSES = frozenset({400, 403, 422})
MESSAGE_LIMIT = 600


def api_message(body: str) -> str:
    """The `message` of a metav1.Status body, else the body itself (shortened)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    message = parsed.get("message") if isinstance(parsed, dict) else None
    text = str(message or body or "no message").strip()
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def refusal(obj: dict[str, Any], status: int, body: str) -> Failure:
    kind = obj.get("kind", "object")
    name = (obj.get("metadata") or {}).get("name", "?")
    return Failure(
        Reason.REJECTED,
        f"the API server refused to create {kind} {name} (HTTP {status}): {api_message(body)}",
    )


def name_taken(obj: dict[str, Any], existing: dict[str, Any]) -> Failure:
    kind = obj.get("kind", "object")
    name = (obj.get("metadata") or {}).get("name", "?")
    owners = [
        f"{r.get('kind')}/{r.get('name')}"
        for r in (existing.get("metadata") or {}).get("ownerReferences") or []
    ]
    held = f"owned by {', '.join(owners)}" if owners else "not made by this run"
    return Failure(
        Reason.REJECTED,
        f"{kind} {name} already exists and is {held}: this run cannot use it; delete it or rename the "
        "benchmark",
    )


def is_own(obj: dict[str, Any], existing: dict[str, Any]) -> bool:
    """Whether ``existing`` (found under ``obj``'s name) is the object this run made: same controller uid
    and the same run, variant and step labels."""
    want = obj.get("metadata") or {}
    have = existing.get("metadata") or {}
    uids = {r.get("uid") for r in want.get("ownerReferences") or []}
    if uids and not uids & {r.get("uid") for r in have.get("ownerReferences") or []}:
        return False
    want_labels, have_labels = want.get("labels") or {}, have.get("labels") or {}
    return all(want_labels.get(k) == have_labels.get(k) for k in (LABEL_RUN, LABEL_VARIANT, LABEL_STEP))
