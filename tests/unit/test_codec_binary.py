"""The generated Avro writers and readers (schemas/binary.py) against fastavro: not one byte different.

The single-object encoding is the contract on the wire and on disk, so for every record type, on generated
values, the generated writer must give exactly the bytes fastavro's `schemaless_writer` gives for the same
schema, and the generated reader must read fastavro's bytes into the value fastavro's reader (plus the
dict-to-dataclass conversion) gives.
"""

from __future__ import annotations

import dataclasses
import io

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.state import InstanceState, StepState
from schemas.binary import read_long, write_long, zigzag_varint
from schemas.codec import Codec, DecodeError, InMemorySchemaRegistry
from schemas.registry import RECORD_TYPES
from tests.unit.test_codec import HAND_BUILT, instance_state, records

CODEC = Codec()


def fastavro_bytes(codec: Codec, value) -> bytes:
    """What the codec wrote before the generated writers: header + fastavro on the converted dict."""
    current = codec._current[type(value)]
    out = io.BytesIO()
    fastavro.schemaless_writer(out, current.parsed, current.to_dict(value), disable_tuple_notation=True)
    return current.header + out.getvalue()


def fastavro_decoded(codec: Codec, data: bytes):
    reader = codec._by_fingerprint[data[2:10]]
    body = io.BytesIO(data)
    body.seek(10)
    return reader.from_dict(fastavro.schemaless_reader(body, reader.writer, reader.reader))


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_generated_writer_gives_fastavros_bytes_and_the_reader_reads_them_back(cls, data):
    value = data.draw(records(cls))
    encoded = CODEC.encode(value)
    assert encoded == fastavro_bytes(CODEC, value)
    assert CODEC.decode(encoded) == value
    assert CODEC.decode(encoded) == fastavro_decoded(CODEC, encoded)


@pytest.mark.parametrize("value", HAND_BUILT, ids=lambda v: type(v).__name__)
def test_hand_built_values_give_fastavros_bytes(value):
    assert CODEC.encode(value) == fastavro_bytes(CODEC, value)


def test_the_confluent_framing_carries_the_same_body():
    registry = Codec(resolver=InMemorySchemaRegistry())
    value = instance_state()
    framed = registry.encode(value)
    assert framed[:1] == b"\x00" and framed[5:] == CODEC.encode(value)[10:]
    assert registry.decode(framed) == value


@settings(max_examples=300, deadline=None)
@given(n=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_longs_are_avros_zigzag_varints(n):
    out = io.BytesIO()
    fastavro.schemaless_writer(out, "long", n)
    assert write_long(n) == zigzag_varint(n) == out.getvalue()
    assert read_long(out.getvalue() + b"\xff", 0) == (n, len(out.getvalue()))


def test_values_of_the_wrong_type_are_written_as_fastavro_writes_them():
    # a float in a long is truncated, a truthy non-bool is true: as fastavro did, so no producer breaks
    value = dataclasses.replace(instance_state(), seq=12.9, current_step=2.0, template_version=True)
    assert CODEC.encode(value) == fastavro_bytes(CODEC, value)
    decoded = CODEC.decode(CODEC.encode(value))
    assert (decoded.seq, decoded.current_step, decoded.template_version) == (12, 2, 1)


def test_a_long_out_of_range_and_a_string_that_is_not_one_are_refused():
    from schemas.codec import EncodeError

    with pytest.raises(EncodeError, match="OverflowError"):
        CODEC.encode(dataclasses.replace(instance_state(), seq=2**63))
    with pytest.raises(EncodeError, match="cannot encode InstanceState"):
        CODEC.encode(dataclasses.replace(instance_state(), tenant_id=7))
    with pytest.raises(EncodeError, match="cannot encode InstanceState"):
        CODEC.encode(dataclasses.replace(instance_state(), seq="7"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Blocks:
    items: tuple[int, ...] = ()
    names: dict[str, int] = dataclasses.field(default_factory=dict)


def test_arrays_and_maps_written_in_blocks_with_sizes_decode():
    """Other writers (Java's, for big arrays) may write a block as a negative count and its size in bytes;
    fastavro never does, the specification allows it."""
    codec = Codec([Blocks])
    header = codec.encode(Blocks())[:10]
    body = (zigzag_varint(-2) + zigzag_varint(2) + zigzag_varint(5) + zigzag_varint(-6)  # block of 2, 2 bytes
            + zigzag_varint(1) + zigzag_varint(7) + zigzag_varint(0)  # block of 1, end
            + zigzag_varint(-1) + zigzag_varint(3) + b"\x02a" + zigzag_varint(9) + zigzag_varint(0))
    assert codec.decode(header + body) == Blocks(items=(5, -6, 7), names={"a": 9})


def test_a_bad_union_index_and_a_negative_length_are_corrupt():
    steps = Codec([StepState])
    data = steps.encode(StepState(step=1))
    with pytest.raises(DecodeError, match="truncated/corrupt body for record StepState: CorruptBody: a negative"):
        steps.decode(data[:10] + b"\x02" + b"\x03")  # step 1, then a status string of length -2
    state = CODEC.encode(dataclasses.replace(instance_state(), pending_by=None))
    # pending_by is ["null", Actor]: its index is the byte after pending_transition; find it by re-encoding
    # with a marker and write an index of 2 (zigzag 4) there
    marked = CODEC.encode(dataclasses.replace(instance_state(), pending_by=None, pending_transition="\u00e9" * 5))
    at = marked.index("\u00e9".encode() * 5) + 10
    with pytest.raises(DecodeError, match="truncated/corrupt body for record InstanceState: CorruptBody: union"):
        CODEC.decode(marked[:at] + b"\x04" + marked[at + 1:])
    assert CODEC.decode(state).pending_by is None


def test_every_released_writer_still_goes_through_fastavro():
    for reader in CODEC._by_fingerprint.values():
        current = CODEC._current[reader.cls]
        assert (reader.read is not None) == (reader.writer is current.parsed and reader.reader is None)
    assert isinstance(CODEC.decode(CODEC.encode(instance_state())), InstanceState)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Unions:
    first: str | None = None  # ["null", "string"]
    second: str | None = "x"  # ["string", "null"]: a union's default must match its first branch
    third: tuple[int | None, ...] = ()


@settings(max_examples=100, deadline=None)
@given(value=records(Unions))
def test_both_orders_of_a_nullable_union_give_fastavros_bytes(value):
    codec = Codec([Unions])
    assert codec.schema(Unions)["fields"][1]["type"] == ["string", "null"]
    assert codec.encode(value) == fastavro_bytes(codec, value)
    assert codec.decode(codec.encode(value)) == value


def test_the_caches_of_longs_stay_bounded_and_right_after_they_start_over():
    from schemas import binary

    base = 1_763_900_000_000
    for n in range(3 * binary._CACHED):
        ts = base + n * 7
        encoded = write_long(ts)
        assert encoded == zigzag_varint(ts) and write_long(ts) == encoded
        assert read_long(encoded, 0) == read_long(encoded + b"\x00", 0) == (ts, 6)
    assert len(binary._LONGS) <= len(binary._SMALL) + binary._CACHED
    assert len(binary._READ6) <= binary._CACHED
    assert write_long(12.9) == zigzag_varint(12) and write_long(True) == zigzag_varint(1)
