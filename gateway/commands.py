"""Sending commands to the engine, and (for `?wait=true`) waiting until the read model shows their effect.

Commands go to `workflow.commands` keyed by instance id (the engine's partitioning). A command id is
fresh per request, or derived from the principal and `Idempotency-Key`, so a retried request that slips
past the idempotency table is still rejected by the engine as a duplicate. Waiting polls the projector's
tables for an event carrying the command id: an applied event -> the new instance state; a
`CommandRejected` -> 409 with the engine's reason; nothing within the bound -> the plain 202 answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from core.commands import Command
from gateway.problems import DATABASE_DOWN, Problem

if TYPE_CHECKING:
    from gateway.calls import Call, Gateway

POLL_SECONDS = 0.05


def command_id_for(call: Call) -> str:
    if call.idempotency_key and call.principal is not None:
        digest = hashlib.sha256(f"{call.principal.id}\x00{call.idempotency_key}".encode()).hexdigest()
        return f"cmd_{digest[:32]}"
    return f"cmd_{uuid.uuid4().hex}"


def now_ms() -> int:
    return int(time.time() * 1000)


def _not_sent(exc: BaseException) -> Problem:
    return Problem(503, f"the command could not be sent to the engine ({type(exc).__name__}); "
                        "retry with the same Idempotency-Key")


async def _acknowledged(sent: Awaitable[Any]) -> None:
    try:
        await sent
    except Exception as exc:
        raise _not_sent(exc) from exc


class CommandSender:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def send(self, command: Command) -> None:
        """Send `command` and wait until the broker has acknowledged it (acks=all)."""
        await (await self.hand_over(command))

    async def hand_over(self, command: Command) -> Awaitable[None]:
        """Put `command` in the producer's next batch; the awaitable returned waits for its acknowledgement.

        Why two steps: a request can do its own work (a read-model lookup) while the broker acknowledges,
        and the record is already on its way when that work begins. Both raise the same problems as `send`:
        422 when the command cannot be encoded, 503 when it could not be sent.
        """
        gw = self.gateway
        try:
            value = gw.codec.encode(command)
        except Exception as exc:  # retrying cannot help: the request itself holds what cannot be encoded
            raise Problem(422, f"the command cannot be encoded ({type(exc).__name__}: {str(exc)[:200]})") from exc
        try:
            sent = await gw.kafka().send(gw.settings.commands_topic, value, key=command.instance_id.encode())
        except Problem:
            raise
        except Exception as exc:
            raise _not_sent(exc) from exc
        return _acknowledged(sent)

    async def outcome(self, command_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """`{"applied": True}` or `{"rejected": reason}` once the projector saw the command, else None."""
        try:
            return await self._outcome(command_id, timeout)
        except DATABASE_DOWN:
            return None  # the command was sent: answer 202 even if the read model went away meanwhile

    async def _outcome(self, command_id: str, timeout: float | None) -> dict[str, Any] | None:
        pool = self.gateway.pool
        deadline = time.monotonic() + (self.gateway.settings.wait_seconds if timeout is None else timeout)
        while True:
            armed = self.gateway.projected.armed()
            # Refusal first: a command may be both recorded and refused (an agent above its limit leaves an
            # AgentRecommendation for the humans, and its decision is still refused).
            reason = await pool.fetchval("SELECT reason FROM workflow_rejected_commands WHERE command_id = $1",
                                         command_id)
            if reason is not None:
                return {"rejected": reason}
            applied = await pool.fetchval(
                "SELECT 1 FROM workflow_transitions WHERE command_id = $1 AND event_type <> 'CommandRejected' "
                "LIMIT 1", command_id)
            if applied:  # the projector may have committed between the two reads: look at refusals again
                reason = await pool.fetchval("SELECT reason FROM workflow_rejected_commands WHERE command_id = $1",
                                             command_id)
                return {"rejected": reason} if reason is not None else {"applied": True}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            signal = self.gateway.projected
            if signal.listening:
                await signal.wait(armed, min(0.25, remaining))
            else:
                await asyncio.sleep(POLL_SECONDS)
