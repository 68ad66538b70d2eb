"""What the trigger matcher accepts on payments.transfers, and the sentence it files in the DLQ otherwise."""

from __future__ import annotations

import json

import pytest

from core.commands import Advance
from schemas.codec import Codec
from schemas.records import TransferEvent
from streams.matcher import InvalidInput, parse_transfer

CODEC = Codec()
EVENT = TransferEvent(event_id="evt_1", transfer_id="tr_1", event_type="transfer.created", tenant_id="acme",
                      amount_minor=123_456, currency="USD", currency_exponent=2, source_account="a",
                      destination_account="b", metadata={"type": "procurement"}, occurred_at=1)


def test_an_avro_transfer_event_is_read_as_it_was_written():
    assert parse_transfer(CODEC, CODEC.encode(EVENT)) == EVENT


def test_a_json_transfer_event_with_the_same_fields_is_accepted_and_fills_defaults():
    event = parse_transfer(CODEC, json.dumps({"event_id": "evt_2", "amount_minor": 500, "currency": "EUR",
                                              "metadata": {"type": "procurement"}}).encode())
    assert (event.event_id, event.transfer_id, event.event_type) == ("evt_2", "evt_2", "transfer.created")
    assert event.to_trigger()["amount"] == 5


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "empty record"),
    (b"{not json", "not valid JSON"),
    (b'{"event_id": "e", "amount_minor": NaN, "currency": "USD"}', "NaN is not a JSON number"),
    (b'[1, 2]', "not Avro single-object encoding"),
    (b'{"event_id": "e"}', "lacks amount_minor, currency"),
    (b'{"event_id": "e", "amount_minor": 1, "currency": "USD", "colour": "red"}', "unknown fields colour"),
    (b"\x00\x01\x02", "not Avro single-object encoding"),
])
def test_bad_input_is_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidInput, match=reason):
        parse_transfer(CODEC, raw)


def test_an_avro_record_of_another_type_is_refused():
    with pytest.raises(InvalidInput, match="expected a TransferEvent, got Advance"):
        parse_transfer(CODEC, CODEC.encode(Advance(command_id="c", instance_id="i")))
