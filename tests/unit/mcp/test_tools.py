"""The MCP surface without a gateway (the SDK's in-memory client): the tool list and its input schemas match
the reviewed snapshot, every tool declares its annotations, and --read-only keeps only the reads. A change to
a tool's name or schema is a change to what agents were told: update tools_snapshot.json on purpose
(FLOWLINE_UPDATE_SNAPSHOT=1) and say so in docs/agents.md."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mcp import Client

from flowline.mcp import McpSettings, build_server

SNAPSHOT = Path(__file__).with_name("tools_snapshot.json")
READS = {"flowline_list_templates", "flowline_describe_template", "flowline_get_instance",
         "flowline_list_my_pending_approvals", "flowline_list_available_actions", "flowline_explain_refusal",
         "flowline_list_transitions"}


async def tools_of(read_only: bool = False) -> dict:
    server = build_server(McpSettings(url="http://127.0.0.1:9", token="fl_unused", read_only=read_only))
    async with Client(server, raise_exceptions=True) as client:
        return {t.name: t for t in (await client.list_tools()).tools}


async def test_tool_list_matches_the_snapshot():
    tools = await tools_of()
    current = {name: {"description": t.description, "input_schema": t.input_schema,
                      "annotations": t.annotations.model_dump(exclude_none=True)} for name, t in sorted(tools.items())}
    if os.environ.get("FLOWLINE_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


async def test_every_tool_declares_its_annotations_and_is_prefixed():
    for name, tool in (await tools_of()).items():
        assert name.startswith("flowline_")
        a = tool.annotations
        assert a is not None and None not in (a.read_only_hint, a.destructive_hint, a.idempotent_hint,
                                              a.open_world_hint), name
        assert a.read_only_hint is (name in READS), name
        if not a.read_only_hint and name != "flowline_explain_refusal":
            assert "idempotency_key" in tool.input_schema["properties"], name


@pytest.mark.parametrize("read_only", [True, False])
async def test_read_only_keeps_the_reads(read_only: bool):
    names = set(await tools_of(read_only))
    assert (names == READS) is read_only
    assert names >= READS
