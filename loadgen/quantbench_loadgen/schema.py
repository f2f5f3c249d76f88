"""Base class and shared field types for every external shape (CRD spec, Job inputs, results).

Field names are camelCase on the wire (Kubernetes convention) and snake_case in Python. Unknown fields are
rejected so that a typo in a spec is an error naming the field, never silently ignored.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema


def to_camel(name: str) -> str:
    """snake_case -> camelCase, leaving letters after digits alone (e2e_ms -> e2eMs, not e2EMs)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class ApiModel(BaseModel):
    """Strict camelCase model: the base of every spec, status and result shape."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        use_enum_values=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready dict with camelCase keys, omitting unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """Seconds in a Go-style duration such as ``20m``, ``1h30m`` or ``250ms``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration: write e.g. 90s, 20m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


Duration = Annotated[str, Field(pattern=DURATION_PATTERN, examples=["20m"])]


def cel(rule: str, message: str) -> dict[str, str]:
    """A CEL validation rule for the generated CRD; the model's Python validator raises the same message."""
    return {"rule": rule, "message": message}


def cel_rules(*rules: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` for a model whose cross-field rules the apiserver must also check."""
    return {"x-kubernetes-validations": list(rules)}


RATE_STRING_PATTERN = r"^(inf|0*[1-9][0-9]*(\.[0-9]+)?|0*\.[0-9]*[1-9][0-9]*)$"


def _parse_rate(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a request rate is a number of requests per second or 'inf'")
    if isinstance(value, int | float):
        if isinstance(value, float) and not (value.is_integer() or math.isinf(value)):
            # Kubernetes int-or-string fields cannot hold fractions: keep local and cluster specs identical.
            raise ValueError(f"write the fractional request rate {value} as a string, e.g. '{value}'")
        rate = float(value)
    elif isinstance(value, str) and re.fullmatch(RATE_STRING_PATTERN, value.strip()):
        rate = math.inf if value.strip() == "inf" else float(value)
    else:
        raise ValueError(f"request rate {value!r} must be a number > 0 (requests/s) or 'inf' (closed loop)")
    if not rate > 0:
        raise ValueError(f"request rate {value!r} must be > 0 requests/s, or 'inf' for a closed loop")
    return rate


def _rate_to_wire(rate: float) -> int | float | str:
    if math.isinf(rate):
        return "inf"
    return int(rate) if rate.is_integer() else rate


RequestRate = Annotated[
    float,
    BeforeValidator(_parse_rate),
    PlainSerializer(_rate_to_wire),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "pattern": RATE_STRING_PATTERN,
            "description": "Requests per second (> 0), or 'inf' for a closed loop. Fractions as strings: '0.5'.",
        }
    ),
]


def rate_label(rate: float) -> str:
    """How a request rate is named in results, metrics and reports: ``4``, ``0.5`` or ``inf``."""
    return str(_rate_to_wire(rate))
