"""Avro schemas derived from the dataclasses, and the committed `schemas/*.avsc` that record them."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

import fastavro
import pytest

from core.actors import Actor
from core.commands import COMMAND_TYPES, StartInstance
from core.effects import StepRequest
from core.events import EVENT_TYPES
from core.state import InstanceState
from core.types import Json
from schemas.avro import UnsupportedType, avro_schema_for, snake_case
from schemas.codec import Codec, load_history
from schemas.generate import SCHEMA_DIR, archive, expected_files, main, stale_files
from schemas.records import TransferEvent
from schemas.registry import RECORD_TYPES


def fields_of(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in schema["fields"]}


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, kw_only=True)
class Pair:
    """Two actors and everything else a message may hold.

    Only the first docstring line becomes the Avro doc.
    """

    left: Actor
    right: Actor | None = None
    color: Color = Color.BLUE
    tags: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=lambda: {"a": 1})
    payload: Json = None
    blob: bytes = b"\x00\xff"
    ratio: float = 0.5
    limit: int | None = 7
    required_text: str


class TestGeneratedSchemas:
    def test_committed_avsc_files_match_the_dataclasses(self):
        stale = stale_files()
        assert not stale, f"stale schemas/*.avsc: {stale}; run `python -m schemas.generate` and commit the result"

    def test_every_topic_record_type_has_a_file_named_after_it(self):
        names = set(expected_files())
        for cls in (*COMMAND_TYPES, *EVENT_TYPES, InstanceState):
            assert f"{snake_case(cls.__name__)}.avsc" in names
        assert {"step_request.avsc", "transfer_event.avsc", "dlq_record.avsc", "template_record.avsc",
                "payment_command.avsc", "payment_result.avsc"} <= names

    def test_check_mode_passes_on_the_committed_files(self, capsys):
        assert main(["--check"]) == 0

    def test_check_mode_names_a_stale_file_and_the_command_to_fix_it(self, tmp_path, capsys, monkeypatch):
        for name, text in expected_files().items():
            (tmp_path / name).write_text(text)
        (tmp_path / "start_instance.avsc").write_text("{}\n")
        assert stale_files(tmp_path) == ["start_instance.avsc"]
        monkeypatch.setattr("schemas.generate.SCHEMA_DIR", tmp_path)
        monkeypatch.setattr("schemas.generate.stale_files", lambda: stale_files(tmp_path))
        assert main(["--check"]) == 1
        assert "python -m schemas.generate" in capsys.readouterr().out

    def test_archive_keeps_each_committed_schema_under_its_record_and_fingerprint(self, tmp_path):
        current, history = tmp_path / "schemas", tmp_path / "history"
        current.mkdir()
        shutil.copyfile(SCHEMA_DIR / "step_request.avsc", current / "step_request.avsc")
        assert len(archive(current, history)) == 1
        assert archive(current, history) == []  # already kept
        (kept,) = (history / "step_request").glob("*.avsc")
        assert load_history(history) == [avro_schema_for(StepRequest)]
        assert kept.stem == Codec(history=[]).fingerprint(StepRequest).hex()

    def test_every_schema_parses_and_lists_every_init_field_in_order(self):
        for cls in RECORD_TYPES:
            schema = avro_schema_for(cls)
            fastavro.parse_schema(schema, named_schemas={})
            assert [f["name"] for f in schema["fields"]] == [f.name for f in dataclasses.fields(cls) if f.init]

    def test_record_files_are_pretty_printed_json(self):
        text = (SCHEMA_DIR / "step_request.avsc").read_text()
        assert text.startswith('{\n  "type": "record",\n  "name": "StepRequest",\n  "namespace": "flowline",')


class TestTypeMapping:
    schema = avro_schema_for(Pair)
    fields = fields_of(schema)

    def test_record_name_namespace_and_first_doc_line(self):
        assert (self.schema["name"], self.schema["namespace"]) == ("Pair", "flowline")
        assert self.schema["doc"] == "Two actors and everything else a message may hold."

    def test_a_nested_record_is_defined_once_then_referenced_by_name(self):
        left = self.fields["left"]["type"]
        assert left["type"] == "record" and left["name"] == "Actor"
        assert self.fields["right"]["type"] == ["null", "Actor"]

    def test_a_class_without_docstring_gets_no_doc(self):
        assert "doc" not in self.fields["left"]["type"]

    def test_str_enum_is_a_string_so_new_members_stay_compatible(self):
        assert self.fields["color"] == {"name": "color", "type": "string", "default": "blue"}

    def test_tuple_is_an_array_and_dict_a_map_with_factory_default(self):
        assert self.fields["tags"] == {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []}
        assert self.fields["counts"] == {
            "name": "counts", "type": {"type": "map", "values": "long"}, "default": {"a": 1}
        }

    def test_json_is_a_string_whose_default_is_the_json_text_of_the_dataclass_default(self):
        assert self.fields["payload"] == {"name": "payload", "type": "string", "default": "null"}

    def test_optional_with_none_default_puts_null_first(self):
        assert self.fields["right"]["default"] is None

    def test_optional_with_a_value_default_puts_the_value_branch_first(self):
        assert self.fields["limit"] == {"name": "limit", "type": ["long", "null"], "default": 7}

    def test_primitives(self):
        assert self.fields["blob"] == {"name": "blob", "type": "bytes", "default": "\x00\xff"}
        assert self.fields["ratio"]["type"] == "double"

    def test_a_field_without_default_has_no_avro_default(self):
        assert self.fields["required_text"] == {"name": "required_text", "type": "string"}

    def test_a_record_default_is_written_out_field_by_field(self):
        initiated_by = fields_of(avro_schema_for(StartInstance))["initiated_by"]
        assert initiated_by["default"] == {
            "id": "flowline", "kind": "system", "roles": [], "tenant_id": "", "display_name": "Flowline engine",
            "approval_limits": None,
        }

    @pytest.mark.parametrize(
        "hint",
        [int | str, set[str], tuple[int, str], dict[int, str], Any, list, typing.Literal["a"]],
        ids=str,
    )
    def test_a_field_type_without_mapping_is_refused_with_the_field_name(self, hint):
        cls = dataclasses.make_dataclass("Odd", [("odd", hint)])
        with pytest.raises(UnsupportedType, match=r"Odd\.odd"):
            avro_schema_for(cls)

    def test_a_plain_enum_is_refused(self):
        class Level(Enum):
            LOW = 1

        cls = dataclasses.make_dataclass("Leveled", [("level", Level)])
        with pytest.raises(UnsupportedType, match="StrEnum"):
            avro_schema_for(cls)

    def test_two_classes_with_one_name_in_one_schema_are_refused(self):
        other_actor = dataclasses.make_dataclass("Actor", [("id", str)])
        cls = dataclasses.make_dataclass("Clash", [("a", Actor), ("b", other_actor)])
        with pytest.raises(UnsupportedType, match="two different classes named Actor"):
            avro_schema_for(cls)

    def test_snake_case_file_names(self):
        assert [snake_case(n) for n in ("InstanceState", "DlqRecord", "HTTPCallMade", "StepRequest")] == [
            "instance_state", "dlq_record", "http_call_made", "step_request"]


def transfer(amount_minor: int, exponent: int = 2) -> TransferEvent:
    return TransferEvent(
        event_id="evt_1", transfer_id="tr_1", event_type="transfer.created", tenant_id="acme",
        amount_minor=amount_minor, currency="USD", currency_exponent=exponent, source_account="acc_src",
        destination_account="acc_dst", metadata={"channel": "api"}, occurred_at=1_763_900_000_000,
    )


class TestTransferEvent:
    @pytest.mark.parametrize(
        ("minor", "exponent", "amount"),
        [(12345, 2, 123.45), (10000, 2, 100), (500, 0, 500), (1, 3, 0.001), (-250, 2, -2.5), (0, 2, 0),
         (123456789012345678, 2, 1234567890123456.78)],
    )
    def test_amount_is_exact_major_units_int_when_integral(self, minor, exponent, amount):
        got = transfer(minor, exponent).to_trigger()["amount"]
        assert got == amount and type(got) is type(amount)
        exact = Decimal(minor).scaleb(-exponent)
        assert (Decimal(got) == exact) if isinstance(got, int) else (got == float(exact))

    def test_trigger_carries_the_fields_templates_read(self):
        assert transfer(5_000_000).to_trigger() == {
            "id": "tr_1", "event_id": "evt_1", "transfer_id": "tr_1", "event_type": "transfer.created",
            "tenant_id": "acme", "amount": 50000, "amount_minor": 5_000_000, "currency": "USD", "source": "acc_src",
            "destination": "acc_dst", "metadata": {"channel": "api"}, "occurred_at": 1_763_900_000_000,
        }

    def test_negative_exponent_is_refused(self):
        with pytest.raises(ValueError, match="currency_exponent"):
            transfer(1, -1)


def test_the_core_still_imports_no_avro():
    code = "import sys, core.commands, core.events, core.state, core.effects; print('fastavro' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
