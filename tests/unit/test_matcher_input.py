"""What the trigger matcher accepts on payments.transfers, and the sentence it files in the DLQ otherwise."""

from __future__ import annotations

import json

import pytest

from core.commands import Advance
from schemas.codec import Codec
from schemas.records import DomainEvent, TransferEvent
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
    (b'{"event_id": "e"}', "needs event_type"),
    (b'{"event_id": "e", "amount_minor": 5}', "lacks currency"),
    (b'{"event_id": "e", "event_type": "x", "customer": 1}', "unknown fields customer; put them under data"),
    (b'{"event_id": "e", "event_type": "x", "data": [1]}', "data must be an object"),
    (b'{"event_id": "e", "amount_minor": 1, "currency": "USD", "colour": "red"}', "unknown fields colour"),
    (b"\x00\x01\x02", "not Avro single-object encoding"),
])
def test_bad_input_is_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidInput, match=reason):
        parse_transfer(CODEC, raw)


def test_an_avro_record_of_another_type_is_refused():
    with pytest.raises(InvalidInput, match="expected a TransferEvent or DomainEvent, got Advance"):
        parse_transfer(CODEC, CODEC.encode(Advance(command_id="c", instance_id="i")))


def test_a_json_domain_event_exposes_its_data_at_the_top_of_the_trigger():
    event = parse_transfer(CODEC, json.dumps({"event_id": "evt_9", "event_type": "account.opened", "tenant_id": "acme",
                                              "data": {"customer_id": "c_1", "metadata": {"email": "a@b"}}}).encode())
    assert isinstance(event, DomainEvent)
    trigger = event.to_trigger()
    assert trigger["customer_id"] == "c_1" and trigger["event_type"] == "account.opened"
    assert trigger["id"] == "evt_9" and trigger["metadata"] == {"email": "a@b"}


def test_an_avro_domain_event_round_trips():
    event = DomainEvent(event_id="evt_10", event_type="limit.changed", tenant_id="acme", occurred_at=5,
                        data={"limit": 1000})
    assert parse_transfer(CODEC, CODEC.encode(event)) == event
