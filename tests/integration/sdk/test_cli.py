"""The `flowline` CLI drives the procurement example end to end, as a subprocess against the real stack:
`send transfer` starts it, `pending` shows it to the CFO, `instances approve` as the CFO and the manager,
`instances show` has the audit trail, `events tail` reads its events from workflow.events; plus
`templates list|show|validate|apply|diff` and a refusal's exit code. `--json` output is parsed.

The subprocesses run with asyncio so this event loop keeps serving the in-process gateway meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from core.builtin import builtin_template
from tests.integration.engine_harness import REPO
from tests.integration.sdk.conftest import ADMIN, CFO, MANAGER, REQUESTER, VIEWER

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Cli:
    def __init__(self, sdk) -> None:
        self.env = {**os.environ, "FLOWLINE_URL": sdk.url, "FLOWLINE_TOKEN": VIEWER,
                    "FLOWLINE_KAFKA_BOOTSTRAP": sdk.kafka_bootstrap, "FLOWLINE_TOPIC_PREFIX": sdk.prefix}

    async def run(self, *args: str, token: str | None = None, expect: int = 0) -> tuple[str, str]:
        argv = [*args, *(["--token", token] if token else [])]
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "deploy.cli", *argv, cwd=REPO, env=self.env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == expect, (f"flowline {' '.join(argv)} -> {proc.returncode}\n"
                                           f"{out.decode()}\n{err.decode()}")
        return out.decode(), err.decode()

    async def json(self, *args: str, token: str | None = None, expect: int = 0):
        out, _ = await self.run(*args, "--json", token=token, expect=expect)
        return json.loads(out)


async def test_the_cli_drives_procurement_end_to_end(sdk):
    cli = Cli(sdk)
    event_id = f"evt_cli_{uuid.uuid4().hex[:8]}"
    sent = await cli.json("send", "transfer", "--amount", "2500", "--tenant", "acme", "--type", "procurement",
                          "--event-id", event_id)
    assert sent["event"]["amount_minor"] == 250_000 and sent["topic"] == f"{sdk.prefix}payments.transfers"

    instance_id = None
    deadline = time.monotonic() + 30
    while instance_id is None and time.monotonic() < deadline:
        listed = await cli.json("instances", "list", "--template", "wf_procurement_approval", "--limit", "500")
        instance_id = next((i["id"] for i in listed if i["source"].endswith(f":{event_id}")), None)
        await asyncio.sleep(0 if instance_id else 0.2)
    assert instance_id, f"no instance for {event_id}"

    while time.monotonic() < deadline:
        pending = await cli.json("pending", token=CFO)
        if any(p["instance_id"] == instance_id for p in pending):
            break
        await asyncio.sleep(0.2)
    assert [p["step_name"] for p in pending if p["instance_id"] == instance_id] == ["CFO Approval"]
    table, _ = await cli.run("pending", token=CFO)
    assert table.splitlines()[0].split()[:3] == ["INSTANCE", "STEP", "STEP"] and instance_id in table

    refused = await cli.json("instances", "approve", instance_id, "2", "--reason", "not mine", token=MANAGER,
                             expect=1)
    assert refused["status"] == 409 and "not among the approvers" in refused["detail"]
    after_cfo = await cli.json("instances", "approve", instance_id, "2", "--reason", "within Q3 budget", token=CFO)
    assert after_cfo["status"] == "ACTIVE" and after_cfo["current_step"] == 3
    await cli.json("instances", "approve", instance_id, "3", "-r", "vendor verified", token=MANAGER)
    await sdk.world.play_action_handler(instance_id, 4)

    shown = None
    while time.monotonic() < deadline + 30:
        shown = await cli.json("instances", "show", instance_id)
        if shown["status"] == "COMPLETED":
            break
        await asyncio.sleep(0.2)
    assert shown["status"] == "COMPLETED"
    decisions = [(t["actor"]["id"], t["reasoning"]) for t in shown["timeline"] if t["event_type"] == "DecisionRecorded"]
    assert decisions == [("alice-cfo", "within Q3 budget"), ("bob-manager", "vendor verified")]
    human, _ = await cli.run("instances", "show", instance_id)
    assert "InstanceCompleted" in human and "within Q3 budget" in human

    out, _ = await cli.run("events", "tail", "--instance", instance_id, "--from-beginning", "--until",
                           "InstanceCompleted", "--timeout", "30", "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event_type"] == "InstanceStarted" and events[-1]["event_type"] == "InstanceCompleted"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {"DecisionRecorded", "CommandRejected", "StepSucceeded"} <= {e["event_type"] for e in events}


async def test_the_cli_lists_shows_validates_applies_and_diffs_templates(sdk, tmp_path: Path):
    cli = Cli(sdk)
    listed = await cli.json("templates", "list")
    assert "wf_procurement_approval" in [t["id"] for t in listed]
    shown = await cli.json("templates", "show", "wf_procurement_approval")
    assert shown["document"]["steps"][1]["name"] == "CFO Approval"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "Bad", "trigger_type": "manual",
                               "steps": [{"type": "approval", "name": "A", "config": {}}]}))
    verdict = await cli.json("templates", "validate", "-f", str(bad), expect=1)
    assert not verdict["valid"] and verdict["errors"][0]["pointer"].startswith("/steps/0/config")

    document = builtin_template("procurement_approval")
    document.update(name=f"CLI procurement {uuid.uuid4().hex[:6]}", trigger_type="manual")
    path = tmp_path / "procurement.json"
    path.write_text(json.dumps(document))
    created = await cli.json("templates", "apply", "-f", str(path), token=ADMIN)
    assert created["action"] == "created" and created["template"]["version"] == 1
    template_id = created["template"]["id"]
    assert (await cli.json("templates", "validate", "-f", str(path), token=ADMIN))["validated_by"] == "server"
    assert (await cli.json("templates", "apply", "-f", str(path), token=ADMIN))["action"] == "unchanged"

    document["steps"][2]["config"]["timeout_hours"] = 12
    path.write_text(json.dumps(document))
    diff, _ = await cli.run("templates", "diff", template_id, str(path), expect=3)
    changed = [line.replace(" ", "") for line in diff.splitlines() if line[:1] in "+-" and "timeout" in line]
    assert changed == ['-"timeout_hours":24', '+"timeout_hours":12']
    updated = await cli.json("templates", "apply", "-f", str(path), token=ADMIN)
    assert updated["action"] == "updated" and updated["template"]["version"] == 2
    same = await cli.json("templates", "diff", f"{template_id}@2", str(path), expect=0)
    assert same["same"]
    await cli.run("templates", "diff", f"{template_id}@1", f"{template_id}@2", expect=3)


async def test_the_cli_starts_a_manual_instance_once_per_idempotency_key(sdk, tmp_path: Path):
    cli = Cli(sdk)
    document = builtin_template("procurement_approval")
    document.update(name=f"CLI manual {uuid.uuid4().hex[:6]}", trigger_type="manual")
    path = tmp_path / "manual.json"
    path.write_text(json.dumps(document))
    template_id = (await cli.json("templates", "apply", "-f", str(path), token=ADMIN))["template"]["id"]
    await sdk.world.engine_knows(template_id)
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"id": f"tr_{uuid.uuid4().hex[:8]}", "amount": 2500}))
    key = f"cli-start-{uuid.uuid4().hex}"
    started = await cli.json("instances", "start", template_id, "--data", f"@{data}", "--idempotency-key", key,
                             token=REQUESTER)
    assert started["template_id"] == template_id and started["trigger"]["amount"] == 2500
    again = await cli.json("instances", "start", template_id, "--data", f"@{data}", "--idempotency-key", key,
                           token=REQUESTER)
    assert again["id"] == started["id"]
    await cli.run("instances", "start", template_id, "--data", "[1]", token=REQUESTER, expect=2)
    await cli.run("instances", "start", template_id, "--data", "{}", token=VIEWER, expect=1)


async def test_the_stack_commands_still_parse(sdk):
    out, _ = await Cli(sdk).run("stack", "--help")
    assert "up" in out and "--profile" in out
