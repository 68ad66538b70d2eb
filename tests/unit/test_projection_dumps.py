"""`store.projection.dumps` turns nested dataclasses into JSON one level at a time (issue 15: asdict's deep
copy was a twentieth of the projector's CPU). The audit rows must read exactly as before."""

from __future__ import annotations

import dataclasses
import enum
import json

from store.projection import dumps, event_details
from tests.unit.harness import Harness, human


def asdict_default(value):
    """What `dumps` did before: `dataclasses.asdict` for a dataclass."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def test_event_details_dump_to_the_same_json_as_with_asdict():
    h = Harness("procurement_approval", instance_id="wfi_dumps")
    h.start({"amount": 50_000, "currency": "USD", "tags": ("a", "b")})
    h.approve(2, human("cfo_1", "cfo"), "within budget")
    h.approve(3, human("fm_1", "finance_manager"))
    details = [event_details(e) for e in h.events]
    assert any(dataclasses.is_dataclass(v) for d in details for v in d.values())  # nested ones are there
    assert dumps(details) == json.dumps(details, default=asdict_default, separators=(",", ":"))


def test_dumps_writes_what_json_wrote_for_what_orjson_cannot_take_alone():
    """`dumps` writes with orjson (issue 15); the read model must store the same values as with `json`:
    datetimes as their `str` text, a key that is no string as its text, an integer beyond 64 bits exactly,
    sets and bytes through `_default`, non-ASCII text as it is."""
    from datetime import UTC, datetime

    from store.projection import _default

    value = {"at": datetime(2026, 11, 30, 13, 0, 0, 123000, tzinfo=UTC), 7: "seven", "big": 2 ** 70,
             "set": frozenset({"x"}), "raw": b"\x01\xff", "name": "Zoë ✓", "nested": [("a", 1.5)],
             "wide": -(2 ** 64)}
    written = dumps(value)
    assert json.loads(written) == json.loads(json.dumps(value, default=_default, separators=(",", ":")))
    assert json.loads(written)["at"] == "2026-11-30 13:00:00.123000+00:00"


def test_dumps_writes_every_field_of_a_dataclass_also_one_named_with_an_underscore():
    """orjson's own dataclass encoding leaves out fields whose name begins with `_`; `dumps` must not."""

    @dataclasses.dataclass(frozen=True)
    class Detail:
        name: str
        _hidden: int

    assert json.loads(dumps({"d": Detail("x", 1)})) == {"d": {"name": "x", "_hidden": 1}}
