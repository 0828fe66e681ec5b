"""An operator's MCP tool server through the whole platform: the agent calls it, the call and its
result are in the feature's transcript, and the feature is delivered."""

import json
import sys
from pathlib import Path

import pytest

from tests.support.platform import (
    FINAL,
    call,
    feature_request,
    greeting_turns,
    running_platform,
    turn,
    wait_for,
    write_script,
)

SERVER_SCRIPT = Path(__file__).parents[1] / "data" / "mcp" / "tickets_server.py"
TOOL = "mcp__tickets__lookup_ticket"


async def test_the_agent_uses_the_operators_mcp_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, [turn(call(TOOL, ticket="42")), *greeting_turns()])
    servers = [{"name": "tickets", "command": sys.executable, "args": [str(SERVER_SCRIPT)], "trusted": True}]
    async with running_platform(
        tmp_path, monkeypatch, scripts, SF_MCP_SERVERS_JSON=json.dumps(servers)
    ) as api:
        assert (await api.post("/api/v1/features", json=feature_request(origin, "mcp1"))).status_code == 202
        feature = await wait_for(api, "mcp1", FINAL)
        assert feature["status"] == "delivered", feature["failure_reason"]
        entries = (await api.get("/api/v1/features/mcp1/transcript")).json()["entries"]
        calls = [
            entry["content"]
            for entry in entries
            if entry["kind"] == "tool" and entry["content"]["name"] == TOOL
        ]
        assert calls[0]["result"] == "Ticket 42: greet people by name, in English"
