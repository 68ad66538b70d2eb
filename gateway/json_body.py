"""Parsing a request body: JSON that the rest of Flowline can hold, or a problem document (issue 10.8).

`json.loads` alone accepts what later fails far from the request: a 100,000-deep body (RecursionError, a
500), `NaN`/`Infinity`/`1e400` (no JSON numbers; the codec refuses them when the command is sent, which
looked like a retryable 503), and strings with NUL or an unpaired surrogate (PostgreSQL refuses them, a
500; or, sent on to Kafka, a record the projector cannot store). Refuse each here, once, for every body.
"""

from __future__ import annotations

import json
import math
from typing import Any

from gateway.problems import Problem

MAX_JSON_DEPTH = 64  # objects/arrays nested deeper than this are refused, before anything recurses on them


class NonFiniteNumber(ValueError):
    """NaN, Infinity or a number too large for a float: no JSON number, and no request that can succeed."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"the number {text[:40]} is too large")
    return value


def _no_constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not a JSON number")


def _structure_problem(value: Any, limit: int = MAX_JSON_DEPTH) -> Problem | None:
    """Why a parsed body cannot be processed, or None. Iterative, so the check itself cannot overflow the
    stack: containers nested deeper than `limit`, and strings PostgreSQL and the codec cannot store (NUL,
    unpaired surrogates such as "\ud800"), which would otherwise fail later as a 500."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return Problem(422, "strings must not contain NUL (\\u0000)", pointer="")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return Problem(422, "strings must be valid Unicode (an unpaired surrogate escape was sent)",
                               pointer="")
            continue
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return Problem(400, f"the body nests deeper than {limit} levels", pointer="")
        stack.extend((child, depth + 1) for child in children)
    return None


def loads(raw: bytes) -> Any:
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except NonFiniteNumber as exc:
        raise Problem(422, f"the body holds a non-finite number: {exc}", pointer="") from None
    except RecursionError:
        raise Problem(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels", pointer="") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}", pointer="") from None
    problem = _structure_problem(value)
    if problem is not None:
        raise problem
    return value
