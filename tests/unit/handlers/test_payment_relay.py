"""The payment results relay's one rule: an answer under an operation key is its instance's command."""

from __future__ import annotations

from core.commands import RecordPaymentResult
from handlers.payment_relay import command_for
from schemas.records import PaymentResult


def answer(key: str, status: str = "succeeded", **fields) -> PaymentResult:
    return PaymentResult(idempotency_key=key, status=status, completed_at=1, **fields)


def test_an_answer_under_an_operation_key_becomes_its_instances_command():
    command = command_for(answer("wfi_7:4:v2", output={"payment_id": "p"}))
    assert isinstance(command, RecordPaymentResult)
    assert (command.instance_id, command.step, command.operation_key) == ("wfi_7", 4, "wfi_7:4:v2")
    assert (command.status, command.output, command.error) == ("succeeded", {"payment_id": "p"}, "")
    assert command.command_id == "payment:wfi_7:4:v2"  # a copy, or the answer to a retry, is dropped by the engine


def test_a_refusal_keeps_its_reason():
    command = command_for(answer("wfi_7:4:v1", "failed", error="unknown transfer"))
    assert (command.status, command.error) == ("failed", "unknown transfer")


def test_an_instance_id_with_colons_is_kept_whole():
    assert command_for(answer("tenant:wfi:9:3:v1")).instance_id == "tenant:wfi:9"


def test_the_handlers_own_commands_are_not_relayed():
    assert command_for(answer("lookup:wfi_7:1:1:9f8e")) is None
    assert command_for(answer("wfi_7:4:1")) is None  # a step request id, not a visit's key
    assert command_for(answer("anything")) is None
