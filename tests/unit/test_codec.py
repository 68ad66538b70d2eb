"""The codec: every record type round trips, old and new writers resolve, bad bytes fail clearly."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import typing
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.actors import SYSTEM, Actor, ApprovalLimits
from core.commands import COMMAND_TYPES, Advance, CompleteExternal, RecordDecision, ReportStepResult, StartInstance
from core.effects import StepRequest
from core.events import DecisionRecorded, InstanceStarted, StepApproved
from core.state import InstanceState, StepState, Timer, Vote
from core.types import JSON, ActorKind, Awaiting, TaskStatus, WorkflowStatus
from schemas.codec import (
    HISTORY_DIR,
    Codec,
    DecodeError,
    EncodeError,
    InMemorySchemaRegistry,
    decode_key,
    encode_key,
    load_history,
)
from schemas.records import DlqRecord, PaymentCommand, PaymentResult, TemplateRecord, TransferEvent
from schemas.registry import RECORD_TYPES

FIXTURES = Path(__file__).parent.parent / "fixtures" / "schemas"
CODEC = Codec()


def fixture_schema(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.avsc").read_text())


# -- an independent CRC-64-AVRO and parsing canonical form, straight from the Avro specification ----------

EMPTY64 = 0xC15D213AA4D7A795


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


CRC_TABLE = _crc_table()


def crc64_avro(data: bytes) -> int:
    fp = EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ CRC_TABLE[(fp ^ byte) & 0xFF]
    return fp


def canonical(schema: Any, namespace: str = "", seen: set[str] | None = None) -> str:
    """Parsing canonical form for the subset we generate: primitives, records, arrays, maps, unions."""
    seen = set() if seen is None else seen
    if isinstance(schema, str):
        if schema in ("null", "boolean", "int", "long", "float", "double", "bytes", "string"):
            return json.dumps(schema)
        return json.dumps(schema if "." in schema else f"{namespace}.{schema}")
    if isinstance(schema, list):
        return "[" + ",".join(canonical(s, namespace, seen) for s in schema) + "]"
    kind = schema["type"]
    if kind == "record":
        namespace = schema.get("namespace", namespace)
        name = f"{namespace}.{schema['name']}"
        seen.add(name)
        fields = ",".join(
            '{"name":' + json.dumps(f["name"]) + ',"type":' + canonical(f["type"], namespace, seen) + "}"
            for f in schema["fields"]
        )
        return '{"name":' + json.dumps(name) + ',"type":"record","fields":[' + fields + "]}"
    if kind == "array":
        return '{"type":"array","items":' + canonical(schema["items"], namespace, seen) + "}"
    if kind == "map":
        return '{"type":"map","values":' + canonical(schema["values"], namespace, seen) + "}"
    return canonical(kind, namespace, seen)


def single_object_header(schema: dict[str, Any]) -> bytes:
    return b"\xc3\x01" + crc64_avro(canonical(schema).encode()).to_bytes(8, "little")


def write_with(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    """What a producer with another version of a schema puts on the wire."""
    out = io.BytesIO()
    out.write(single_object_header(schema))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema, named_schemas={}), datum)
    return out.getvalue()


class TestReferenceFingerprint:
    def test_the_empty_input_fingerprint_is_the_specs_constant(self):
        assert crc64_avro(b"") == 0xC15D213AA4D7A795

    def test_the_reference_agrees_with_the_specs_example_for_null(self):
        assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A

    def test_the_reference_canonical_form_agrees_with_fastavro_for_every_record_type(self):
        for cls in RECORD_TYPES:
            schema = CODEC.schema(cls)
            assert canonical(schema) == fastavro.schema.to_parsing_canonical_form(schema), cls.__name__


class TestSingleObjectEncoding:
    def test_header_is_magic_then_little_endian_crc64_of_the_canonical_form_byte_by_byte(self):
        value = step_request()
        data = CODEC.encode(value)
        fp = crc64_avro(canonical(CODEC.schema(StepRequest)).encode())
        assert data[0] == 0xC3
        assert data[1] == 0x01
        for i in range(8):
            assert data[2 + i] == (fp >> (8 * i)) & 0xFF
        assert CODEC.fingerprint(StepRequest) == data[2:10]

    def test_the_body_is_plain_avro_binary(self):
        value = step_request()
        data = CODEC.encode(value)
        schema = fastavro.parse_schema(CODEC.schema(StepRequest), named_schemas={})
        body = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema)
        assert body["request_id"] == value.request_id
        assert json.loads(body["config"]) == value.config

    def test_every_record_type_has_its_own_fingerprint(self):
        assert len({CODEC.fingerprint(cls) for cls in RECORD_TYPES}) == len(RECORD_TYPES)

    def test_one_topic_carries_every_command_type_and_each_record_says_what_it_is(self):
        commands = [
            start_instance(),
            RecordDecision(command_id="c2", instance_id="wfi_1", step=1, decision="approve", actor=agent()),
            step_result(),
            CompleteExternal(command_id="c4", instance_id="wfi_1", step=3, status="completed", result={"ok": True}),
            Advance(command_id="c5", instance_id="wfi_1"),
        ]
        decoded = [CODEC.decode(CODEC.encode(c), COMMAND_TYPES) for c in commands]
        assert decoded == commands
        assert [type(d) for d in decoded] == [type(c) for c in commands]


# -- values -----------------------------------------------------------------------------------------------


def agent() -> Actor:
    return Actor(id="agent_risk", kind=ActorKind.AGENT, roles=("risk", "treasury"), tenant_id="acme",
                 display_name="Risk agent", approval_limits=ApprovalLimits(max_amount=25_000, step_names=("Risk",)))


def transfer_event() -> TransferEvent:
    return TransferEvent(event_id="evt_91", transfer_id="tr_91", event_type="transfer.created", tenant_id="acme",
                         amount_minor=12_500_050, currency="USD", source_account="acc_1", destination_account="acc_2",
                         metadata={"channel": "api", "ref": "INV-7"}, occurred_at=1_763_900_000_000)


def start_instance() -> StartInstance:
    return StartInstance(command_id="start:wfi_1", instance_id="wfi_1", issued_at=1_763_900_000_100,
                         template_id="tpl_hv", template_version=3, tenant_id="acme",
                         trigger=transfer_event().to_trigger(), source="event:payments.transfers:evt_91",
                         agent_context={"model": "risk-v2", "scores": [0.1, 0.93, None], "flags": {}})


def step_request() -> StepRequest:
    return StepRequest(request_id="wfi_1:2:1", instance_id="wfi_1", tenant_id="acme", template_id="tpl_hv",
                       template_version=3, step=2, step_name="Notify treasury", step_key="notify_treasury",
                       kind="notification", attempt=1,
                       config={"url": "https://hooks.example.com/t", "headers": {"X-Sig": "{{secrets.hmac}}"}},
                       context={"trigger": {"amount": 125000.5}, "steps": [None, {"approved_by": ["u1"]}]},
                       requested_at=1_763_900_000_000)


def step_result() -> ReportStepResult:
    return ReportStepResult(command_id="result:wfi_1:2:1", instance_id="wfi_1", step=2, attempt=1,
                            outcome="failed", output={"status_code": 503}, error="partner unavailable",
                            retryable=False)


def instance_state() -> InstanceState:
    vote = Vote(actor_id="u1", actor_kind=ActorKind.HUMAN, decision="approve", at=5, reasoning="looks fine")
    return InstanceState(
        instance_id="wfi_1", tenant_id="acme", template_id="tpl_hv", template_version=3,
        template_name="High value", status=WorkflowStatus.PAUSED, current_step=2,
        steps=(
            StepState(step=1, status=TaskStatus.APPROVED, attempt=1, votes=(vote,), approvers=[{"role": "cfo"}],
                      required=1, output={"approved_by": ["u1"]}),
            StepState(step=2, status=TaskStatus.IN_PROGRESS, attempt=2, awaiting=Awaiting.RETRY, retries=1,
                      error="boom"),
            StepState(step=3),
        ),
        trigger={"amount": 1.5e6, "nested": {"list": [1, "two", None, True]}},
        initiated_by=agent(),
        timers=(Timer(timer_id="wfi_1:2:2:retry", fire_at=99, purpose="retry", step=2, attempt=2),),
        seq=12, recent_commands=("start:wfi_1", "c2"), created_at=1, updated_at=2, failure="",
    )


HAND_BUILT = [
    start_instance(),
    step_result(),
    step_request(),
    instance_state(),
    transfer_event(),
    InstanceStarted(instance_id="wfi_1", seq=1, at=3, command_id="start:wfi_1", template_id="tpl_hv",
                    template_version=3, tenant_id="acme", template_name="High value", trigger={"amount": 10},
                    source="manual", initiated_by=SYSTEM, step_count=3),
    DecisionRecorded(instance_id="wfi_1", seq=4, step=1, actor=agent(), decision="reject", reasoning="limit"),
    StepApproved(instance_id="wfi_1", seq=5, step=1, approved_by=("u1", "agent_risk"), automatic=True),
    DlqRecord(source_topic="payments.transfers", partition=3, offset=1_234_567, key=None, value=b'{"bad": 1',
              reason="not Avro single-object encoding", error_type="DecodeError", failed_at=9, consumer="engine"),
    DlqRecord(source_topic="workflow.commands", partition=0, offset=0, key=b"wfi_\xff", value=b"\xc3\x01",
              reason="truncated", error_type="DecodeError", failed_at=9, consumer="engine"),
    TemplateRecord(template_id="tpl_hv", version=3, tenant_id="acme", name="High value",
                   status=WorkflowStatus.ACTIVE, document={"steps": [{"type": "approval"}]}, updated_at=7),
    PaymentCommand(idempotency_key="wfi_1:3:1", action="execute_transfer", tenant_id="acme",
                   params={"transfer_id": "tr_91", "amount": 125000.5}, requested_at=11),
    PaymentResult(idempotency_key="wfi_1:3:1", status="succeeded", output={"payment_id": "pay_1"}, completed_at=12),
]


@pytest.mark.parametrize("value", HAND_BUILT, ids=lambda v: type(v).__name__)
def test_realistic_values_round_trip(value):
    assert CODEC.decode(CODEC.encode(value)) == value


def test_decoded_values_have_the_declared_python_types():
    state = CODEC.decode(CODEC.encode(instance_state()))
    assert type(state.status) is WorkflowStatus and type(state.steps) is tuple
    assert type(state.steps[1].awaiting) is Awaiting and type(state.steps[0].votes[0].actor_kind) is ActorKind
    assert type(state.initiated_by.roles) is tuple and type(state.initiated_by.approval_limits) is ApprovalLimits
    assert state.initiated_by.approval_limits.max_amount == 25_000.0


def test_json_fields_keep_nested_lists_dicts_numbers_and_none():
    value = start_instance()
    assert CODEC.decode(CODEC.encode(value)).agent_context == {"model": "risk-v2", "scores": [0.1, 0.93, None],
                                                               "flags": {}}


def test_defaults_come_back_as_the_dataclass_defaults():
    value = Advance(command_id="c", instance_id="i")
    assert CODEC.decode(CODEC.encode(value)) == Advance(command_id="c", instance_id="i", issued_at=0, actor=SYSTEM)


# -- every registered type, generated from its type hints ----------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
OVERRIDES: dict[tuple[type, str], st.SearchStrategy[Any]] = {
    (TransferEvent, "currency_exponent"): st.integers(min_value=0, max_value=18),
}


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        assert JSON in hint.__metadata__
        return JSON_VALUES
    simple = {str: st.text(max_size=12), int: INT64, bool: st.booleans(), bytes: st.binary(max_size=16),
              float: st.floats(allow_nan=False)}
    if hint in simple:
        return simple[hint]
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return st.sampled_from(list(hint))
    if dataclasses.is_dataclass(hint):
        return records(hint)
    if origin is tuple:
        return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=6), strategy_for(args[1]), max_size=3)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | strategy_for(inner)
    raise AssertionError(f"no strategy for {hint!r}: teach strategy_for this type")


def records(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, **{
        f.name: OVERRIDES[cls, f.name] if (cls, f.name) in OVERRIDES else strategy_for(hints[f.name])
        for f in dataclasses.fields(cls) if f.init
    })


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_record_type_round_trips(cls, data):
    value = data.draw(records(cls))
    decoded = CODEC.decode(CODEC.encode(value), cls)
    assert decoded == value
    assert type(decoded) is cls


# -- schema evolution ---------------------------------------------------------------------------------------


FIXTURE_WRITERS = [fixture_schema(name) for name in ("report_step_result.v0", "report_step_result.v2",
                                                      "start_instance.v0")]


class TestEvolution:
    codec = Codec(history=[*load_history(HISTORY_DIR), *FIXTURE_WRITERS])

    def test_an_old_writer_without_newer_optional_fields_decodes_with_their_defaults(self):
        data = write_with(fixture_schema("report_step_result.v0"), {
            "command_id": "r1", "instance_id": "wfi_1", "issued_at": 5, "step": 2, "attempt": 1,
            "outcome": "failed", "output": '{"code": 500}'})
        assert self.codec.decode(data) == ReportStepResult(
            command_id="r1", instance_id="wfi_1", issued_at=5, step=2, attempt=1, outcome="failed",
            output={"code": 500}, error="", retryable=True)

    def test_a_missing_json_field_decodes_to_its_dataclass_default_and_nested_records_resolve_too(self):
        data = write_with(fixture_schema("start_instance.v0"), {
            "command_id": "start:wfi_1", "instance_id": "wfi_1", "issued_at": 0, "template_id": "tpl",
            "template_version": 1, "tenant_id": "acme", "trigger": '{"amount": 10}', "source": "manual",
            "initiated_by": {"id": "u1", "kind": "human", "roles": ["ops"], "tenant_id": "acme"}})
        decoded = self.codec.decode(data)
        assert decoded.agent_context is None
        assert decoded.initiated_by == Actor(id="u1", roles=("ops",), tenant_id="acme")

    def test_a_newer_writer_with_extra_fields_is_read_by_the_current_reader(self):
        data = write_with(fixture_schema("report_step_result.v2"), {
            "command_id": "r1", "instance_id": "wfi_1", "issued_at": 5, "step": 2, "attempt": 1,
            "outcome": "succeeded", "output": "null", "error": "", "retryable": True, "duration_ms": 830,
            "handler": "handlers.notification"})
        assert self.codec.decode(data) == ReportStepResult(
            command_id="r1", instance_id="wfi_1", issued_at=5, step=2, attempt=1, outcome="succeeded")

    def test_a_codec_that_does_not_know_the_writer_schema_says_so(self):
        data = write_with(fixture_schema("report_step_result.v0"), {
            "command_id": "r1", "instance_id": "wfi_1", "issued_at": 5, "step": 2, "attempt": 1,
            "outcome": "failed", "output": "null"})
        with pytest.raises(DecodeError, match=f"unknown schema fingerprint 0x{data[2:10].hex()}"):
            CODEC.decode(data)

    def test_history_files_are_found_by_record_and_fingerprint(self, tmp_path):
        schema = fixture_schema("report_step_result.v0")
        fp = crc64_avro(canonical(schema).encode()).to_bytes(8, "little").hex()
        (tmp_path / "report_step_result").mkdir()
        shutil.copyfile(FIXTURES / "report_step_result.v0.avsc", tmp_path / "report_step_result" / f"{fp}.avsc")
        assert load_history(tmp_path) == [schema]

    def test_a_history_file_named_with_the_wrong_fingerprint_is_refused(self, tmp_path):
        (tmp_path / "report_step_result").mkdir()
        shutil.copyfile(FIXTURES / "report_step_result.v0.avsc", tmp_path / "report_step_result" / "00.avsc")
        with pytest.raises(ValueError, match="fingerprint"):
            load_history(tmp_path)

    def test_a_writer_schema_of_an_unknown_record_is_refused(self):
        with pytest.raises(DecodeError, match="not a record type this codec knows"):
            Codec(history=[{"type": "record", "name": "Gone", "namespace": "flowline", "fields": []}])

    @pytest.mark.parametrize("schema", [*load_history(HISTORY_DIR), *FIXTURE_WRITERS], ids=lambda s: s["name"])
    @settings(max_examples=10, deadline=None)
    @given(data=st.data())
    def test_every_released_schema_reads_into_the_current_type(self, schema, data):
        cls = next(c for c in RECORD_TYPES if c.__name__ == schema["name"])
        datum = CODEC._current[cls].to_dict(data.draw(records(cls)))
        for f in schema["fields"]:  # a field the current type dropped: the old writer's default
            datum.setdefault(f["name"], f.get("default"))
        assert type(self.codec.decode(write_with(schema, datum))) is cls


# -- bad input ----------------------------------------------------------------------------------------------


class TestDecodeErrors:
    def test_json_bytes(self):
        with pytest.raises(DecodeError, match=r"not Avro single-object encoding \(expected magic C3 01, got 7b 22\)"):
            CODEC.decode(b'{"event_id": "evt_1"}')

    def test_wrong_magic(self):
        with pytest.raises(DecodeError, match="got c3 02"):
            CODEC.decode(b"\xc3\x02" + bytes(20))

    def test_a_memoryview_decodes_like_bytes(self):
        assert CODEC.decode(memoryview(CODEC.encode(step_result()))) == step_result()

    def test_empty_and_missing_values(self):
        with pytest.raises(DecodeError, match="got nothing"):
            CODEC.decode(b"")
        with pytest.raises(DecodeError, match="tombstone"):
            CODEC.decode(None)  # type: ignore[arg-type]

    def test_unknown_fingerprint(self):
        with pytest.raises(DecodeError, match="unknown schema fingerprint 0xffffffffffffffff"):
            CODEC.decode(b"\xc3\x01" + b"\xff" * 8 + b"\x00")

    def test_truncated_header(self):
        with pytest.raises(DecodeError, match="truncated single-object header"):
            CODEC.decode(CODEC.encode(step_request())[:6])

    def test_truncated_body_at_every_length(self):
        data = CODEC.encode(step_request())
        for end in range(10, len(data)):
            with pytest.raises(DecodeError, match="truncated/corrupt body for record StepRequest"):
                CODEC.decode(data[:end])

    def test_trailing_bytes(self):
        with pytest.raises(DecodeError, match="1 bytes after the record"):
            CODEC.decode(CODEC.encode(step_result()) + b"\x00")

    def test_a_value_outside_the_enum(self):
        current = CODEC._current[TemplateRecord]
        datum = {**current.to_dict(HAND_BUILT[10]), "status": "ARCHIVED"}
        with pytest.raises(DecodeError, match="'ARCHIVED' is not a valid WorkflowStatus"):
            CODEC.decode(write_with(current.schema, datum))

    def test_a_json_field_that_is_not_json(self):
        current = CODEC._current[PaymentCommand]
        datum = {**current.to_dict(HAND_BUILT[11]), "params": "{oops"}
        with pytest.raises(DecodeError, match="invalid values for record PaymentCommand"):
            CODEC.decode(write_with(current.schema, datum))

    def test_a_record_type_this_topic_does_not_carry(self):
        expected = r"record StepRequest is not one of the types expected here \(StartInstance, RecordDecision, "
        with pytest.raises(DecodeError, match=expected):
            CODEC.decode(CODEC.encode(step_request()), COMMAND_TYPES)

    @settings(max_examples=300, deadline=None)
    @given(data=st.binary(max_size=64))
    def test_random_bytes_raise_only_decode_error(self, data):
        with pytest.raises(DecodeError):
            CODEC.decode(data)

    @settings(max_examples=300, deadline=None)
    @given(position=st.integers(min_value=10, max_value=10_000), byte=st.integers(0, 255))
    def test_a_corrupted_body_decodes_or_raises_decode_error_nothing_else(self, position, byte):
        data = bytearray(CODEC.encode(instance_state()))
        data[position % len(data)] = byte
        with contextlib.suppress(DecodeError):
            CODEC.decode(bytes(data))


class TestEncodeErrors:
    def test_a_type_without_schema(self):
        with pytest.raises(EncodeError, match="no schema for Actor"):
            CODEC.encode(agent())

    def test_nan_in_json(self):
        with pytest.raises(EncodeError, match="cannot encode StepRequest"):
            CODEC.encode(dataclasses.replace(step_request(), config={"x": float("nan")}))

    def test_a_string_outside_the_enum(self):
        bad = dataclasses.replace(HAND_BUILT[10], status="ARCHIVED")
        with pytest.raises(EncodeError, match="'ARCHIVED' is not a valid WorkflowStatus"):
            CODEC.encode(bad)

    def test_a_value_of_the_wrong_type(self):
        with pytest.raises(EncodeError, match="cannot encode ReportStepResult"):
            CODEC.encode(dataclasses.replace(step_result(), step="two"))

    def test_a_plain_string_naming_an_enum_member_is_accepted(self):
        value = dataclasses.replace(HAND_BUILT[10], status="PAUSED")
        assert CODEC.decode(CODEC.encode(value)).status is WorkflowStatus.PAUSED


# -- Confluent wire format ----------------------------------------------------------------------------------


class TestConfluentFraming:
    def test_round_trip_with_a_big_endian_schema_id(self):
        registry = InMemorySchemaRegistry(first_id=258)
        producer = Codec(resolver=registry)
        data = producer.encode(step_request())
        assert data[:5] == b"\x00\x00\x00\x01\x02"
        consumer = Codec(resolver=registry)
        assert consumer.decode(data) == step_request()

    def test_each_record_type_gets_its_own_id_and_equal_schemas_share_one(self):
        registry = InMemorySchemaRegistry()
        codec = Codec(resolver=registry)
        ids = {codec.encode(v)[1:5] for v in (step_request(), step_result(), step_request())}
        assert len(ids) == 2
        assert registry.id_for(json.loads(json.dumps(CODEC.schema(StepRequest)))) in {1, 2}

    def test_a_registry_codec_still_reads_single_object_records(self):
        assert Codec(resolver=InMemorySchemaRegistry()).decode(CODEC.encode(step_result())) == step_result()

    def test_an_old_writer_schema_is_served_by_the_registry_and_resolved(self):
        registry = InMemorySchemaRegistry()
        old = fixture_schema("report_step_result.v0")
        schema_id = registry.id_for(old)
        body = io.BytesIO()
        fastavro.schemaless_writer(body, fastavro.parse_schema(old, named_schemas={}), {
            "command_id": "r1", "instance_id": "wfi_1", "issued_at": 5, "step": 2, "attempt": 1,
            "outcome": "succeeded", "output": "null"})
        data = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
        decoded = Codec(resolver=registry).decode(data)
        assert (decoded.retryable, decoded.error) == (True, "")

    def test_an_unknown_schema_id(self):
        with pytest.raises(DecodeError, match="unknown schema id 77"):
            Codec(resolver=InMemorySchemaRegistry()).decode(b"\x00\x00\x00\x00\x4d\x02")

    def test_without_a_resolver_confluent_bytes_are_refused(self):
        with pytest.raises(DecodeError, match="expected magic C3 01, got 00 00"):
            CODEC.decode(b"\x00\x00\x00\x00\x01\x02")

    def test_from_env_picks_the_framing(self):
        assert Codec.from_env(env={}).resolver is None
        registry = InMemorySchemaRegistry()
        codec = Codec.from_env(env={"FLOWLINE_SCHEMA_REGISTRY_URL": "http://registry:8081"}, resolver=registry)
        assert codec.encode(step_result())[:1] == b"\x00"

    def test_from_env_refuses_a_registry_url_until_the_http_client_exists(self):
        with pytest.raises(RuntimeError, match="HTTP schema registry client is not written yet"):
            Codec.from_env(env={"FLOWLINE_SCHEMA_REGISTRY_URL": "http://registry:8081"})


class TestKeys:
    def test_keys_are_utf8(self):
        assert encode_key("wfi_ü") == "wfi_ü".encode()
        assert decode_key(encode_key("wfi_ü")) == "wfi_ü"

    def test_a_key_that_is_not_utf8_or_missing(self):
        with pytest.raises(DecodeError, match="not UTF-8"):
            decode_key(b"\xff")
        with pytest.raises(DecodeError, match="no key"):
            decode_key(None)
