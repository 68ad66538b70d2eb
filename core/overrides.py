"""Template overrides: a new template document from an existing one and a small JSON override document.

PRD-127's `create_from_template(name, overrides)`: the one rule, pure, used by the gateway's
`POST /v1/workflows/templates/{id}/instantiate` and by the SDK (`flowline.overrides` re-exports it, so a
bad override is refused on the client with the same pointers before anything is sent). The override
document names steps by their `name` (or their 1-based number as a string):

    {
      "name": "Procurement (controller signs)",          # the new template's name (default: "<name> (custom)")
      "description": "...",
      "roles": {"cfo": "controller"},                    # every role approver spec naming cfo, in every step
      "amounts": {"Check Amount Tier": 5000},            # the number in that condition's expression
      "timeouts": {"CFO Approval": 24},                  # hours: approval timeout_hours, external completion
      "quorum": {"Risk Committee": "DUAL"},              # a level, or an int n = COMMITTEE with quorum n
      "urls": {"Submit to Compliance": "https://..."},   # the url of an external or webhook step
      "trigger_type": "manual"
    }

Every problem is reported at once with a JSON pointer into the override document (`/roles/cfo`,
`/timeouts/CFO Approval`), like the server's template validation; the result is then validated by the
server like any template.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

KEYS = ("name", "description", "roles", "amounts", "timeouts", "quorum", "urls", "trigger_type")
LEVELS = ("SINGLE", "DUAL", "COMMITTEE", "AUTO")
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")


class OverrideError(ValueError):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{pointer}: {message}" for pointer, message in errors))


def _pointer(*parts: str) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _find_step(steps: list[dict[str, Any]], ref: str) -> dict[str, Any] | None:
    for number, step in enumerate(steps, start=1):
        if step.get("name") == ref or str(number) == str(ref):
            return step
    return None


def _role_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every `{"type": "role", "value": ...}` approver spec anywhere below `node`."""
    if isinstance(node, dict):
        if node.get("type") == "role" and "value" in node:
            yield node
        for value in node.values():
            yield from _role_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _role_specs(value)


def _rename_role(spec: dict[str, Any], old: str, new: str) -> bool:
    value = spec["value"]
    if value == old:
        spec["value"] = new
        return True
    if isinstance(value, list) and old in value:
        spec["value"] = [new if v == old else v for v in value]
        return True
    return False


def apply_overrides(document: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A new template document: `document` (unchanged) with `overrides` applied; OverrideError lists every
    override that does not fit the template."""
    doc = copy.deepcopy(dict(document))
    steps: list[dict[str, Any]] = doc.get("steps") or []
    errors: list[tuple[str, str]] = []
    for key in overrides:
        if key not in KEYS:
            errors.append((_pointer(key), f"unknown override; use one of {', '.join(KEYS)}"))

    doc["name"] = str(overrides.get("name") or f"{doc.get('name', 'template')} (custom)")
    if "description" in overrides:
        doc["description"] = str(overrides["description"])
    if "trigger_type" in overrides:
        doc["trigger_type"] = overrides["trigger_type"]

    for old, new in dict(overrides.get("roles") or {}).items():
        if not isinstance(new, str) or not new:
            errors.append((_pointer("roles", old), "the new role must be a non-empty string"))
            continue
        renamed = [_rename_role(spec, old, new) for spec in _role_specs(steps)]
        if not any(renamed):
            errors.append((_pointer("roles", old), f"no approver of this template has the role {old!r}"))

    def each(section: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
        for ref, value in dict(overrides.get(section) or {}).items():
            step = _find_step(steps, ref)
            if step is None:
                errors.append((_pointer(section, ref), f"no step named {ref!r}"))
                continue
            yield ref, value, step.setdefault("config", {})

    for ref, value, config in each("amounts"):
        _override_amount(ref, value, config, errors)
    for ref, value, config in each("timeouts"):
        step = _find_step(steps, ref) or {}
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            errors.append((_pointer("timeouts", ref), "a timeout is a positive number of hours"))
        elif step.get("type") == "approval":
            config["timeout_hours"] = value
        elif step.get("type") == "external":
            config["completion_timeout_hours"] = value
        else:
            errors.append((_pointer("timeouts", ref), "timeouts apply to approval and external steps"))
    for ref, value, config in each("quorum"):
        step = _find_step(steps, ref) or {}
        if step.get("type") != "approval":
            errors.append((_pointer("quorum", ref), "quorum applies to approval steps"))
        elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
            config["level"], config["quorum"] = "COMMITTEE", value
        elif isinstance(value, str) and value.upper() in LEVELS:
            config["level"] = value.upper()
            config.pop("quorum", None)
        else:
            errors.append((_pointer("quorum", ref), f"a level ({', '.join(LEVELS)}) or a positive number"))
    for ref, value, config in each("urls"):
        step = _find_step(steps, ref) or {}
        if step.get("type") not in ("external", "notification") or "url" not in config:
            errors.append((_pointer("urls", ref), "urls apply to external steps and webhook notifications"))
        elif not isinstance(value, str) or not value:
            errors.append((_pointer("urls", ref), "a url is a non-empty string"))
        else:
            config["url"] = value

    if errors:
        raise OverrideError(errors)
    return doc


def _override_amount(ref: str, value: Any, config: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    """Replace the number in a condition's expression: a number replaces its only number; a mapping
    `{"1000": 5000}` replaces that number wherever it occurs."""
    expression = config.get("expression")
    where = _pointer("amounts", ref)
    if not isinstance(expression, str):
        errors.append((where, "amounts apply to condition steps (their expression)"))
        return
    found = NUMBER.findall(expression)
    if isinstance(value, Mapping):
        for old, new in value.items():
            if str(old) not in found:
                errors.append((_pointer("amounts", ref, old), f"the expression {expression!r} has no {old}"))
                continue
            expression = NUMBER.sub(lambda m, o=str(old), n=new: str(n) if m.group(1) == o else m.group(1),
                                    expression)
        config["expression"] = expression
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if len(found) != 1:
            errors.append((where, f"the expression {expression!r} has {len(found)} numbers; name the one to "
                                  f"replace: {{\"<old>\": <new>}}"))
            return
        config["expression"] = NUMBER.sub(str(value), expression)
    else:
        errors.append((where, "an amount is a number, or a mapping of old number to new"))
