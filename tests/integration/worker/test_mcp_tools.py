"""Operator-configured MCP tool servers, through the official SDK against a real stdio server."""

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from service_feature.llm.scripted import Script, ScriptedProvider
from service_feature.models import TestResult
from service_feature.worker.agent import run_agent
from service_feature.worker.mcp_tools import McpServerConfig, connected, parse_servers
from service_feature.worker.tools import Toolbox
from tests.support.platform import call, turn

# Not under tests/support: a script's folder comes first on its sys.path, and tests/support/platform.py
# would shadow the standard library's `platform` there.
SERVER_SCRIPT = Path(__file__).parents[2] / "data" / "mcp" / "tickets_server.py"
SERVER = McpServerConfig("tickets", sys.executable, (str(SERVER_SCRIPT),))
TOOL = "mcp__tickets__lookup_ticket"


async def _no_tests() -> TestResult:
    raise AssertionError("not run")


def test_servers_are_checked_at_start() -> None:
    assert parse_servers(None) == []
    trusted = json.dumps([{"name": "tickets", "command": "python", "args": ["s.py"], "trusted": True}])
    assert parse_servers(trusted)[0].args == ("s.py",)
    with pytest.raises(ValueError, match="not marked trusted"):
        parse_servers(json.dumps([{"name": "tickets", "command": "python"}]))
    with pytest.raises(ValueError, match="server name"):
        parse_servers(json.dumps([{"name": "a b", "command": "python", "trusted": True}]))
    with pytest.raises(ValueError, match="not JSON"):
        parse_servers("[{")


async def test_the_servers_tools_are_offered_namespaced_and_called() -> None:
    async with connected([SERVER]) as tools:
        assert [spec.name for spec in tools.specs] == [TOOL]
        assert tools.specs[0].parameters["required"] == ["ticket"]
        assert await tools.call(TOOL, {"ticket": "42"}) == (
            "Ticket 42: greet people by name, in English",
            False,
        )
        text, is_error = await tools.call(TOOL, {"ticket": "0"})
        assert is_error
        assert "lookup_ticket" in text  # the server's own error text


async def test_the_agent_calls_an_mcp_tool_and_the_transcript_keeps_it(tmp_path: Path) -> None:
    script = Script.model_validate(
        {"turns": [turn(call(TOOL, ticket="42")), turn(call("finish", summary="read the ticket"))]}
    )
    entries: list[tuple[str, dict[str, Any]]] = []
    async with connected([SERVER]) as tools:
        toolbox = Toolbox(tmp_path, _no_tests, extra=tools)
        result = await run_agent(
            ScriptedProvider(script), toolbox, "task", max_turns=5, record=lambda k, c: entries.append((k, c))
        )
    assert result.summary == "read the ticket"
    tool_results = [content for kind, content in entries if kind == "tool"]
    assert tool_results[0]["name"] == TOOL
    assert tool_results[0]["result"] == "Ticket 42: greet people by name, in English"
    assert not tool_results[0]["is_error"]
