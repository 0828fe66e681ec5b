"""Operator-configured MCP tool servers: their tools given to the agent beside its own.

An operator lists stdio servers in `SF_MCP_SERVERS_JSON` (`[{"name", "command", "args", "env",
"trusted"}]`). For each attempt the worker starts them through the official `mcp` SDK, lists their tools
and offers each to the model as `mcp__<server>__<tool>`; a call goes to the server and its text comes back
as the tool's result. The calls are in the transcript like every tool call (redacted), count against the
agent's turns and budgets, and stop with the attempt when the kill switch stops its model calls.

The worker runs a server as its own child process, with the operator's command and environment: so only
a server the operator marked `trusted` is started. Running untrusted servers inside the test sandbox is
not supported yet; such a server is refused at start with that reason rather than run unconfined.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from service_feature.llm.base import ToolSpec

log = structlog.get_logger(__name__)

PREFIX = "mcp__"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_CALL_SECONDS = 120.0


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    trusted: bool = False


def parse_servers(raw: str | None) -> list[McpServerConfig]:
    """SF_MCP_SERVERS_JSON, checked: a ValueError naming the setting and the entry otherwise."""
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"SF_MCP_SERVERS_JSON is not JSON: {error.msg}") from None
    if not isinstance(entries, list):
        raise ValueError("SF_MCP_SERVERS_JSON must be a list of servers")
    return [_server(entry) for entry in entries]


def _server(entry: Any) -> McpServerConfig:
    if not isinstance(entry, dict) or not isinstance(entry.get("command"), str):
        raise ValueError('SF_MCP_SERVERS_JSON: each server needs "name" and "command"')
    name = str(entry.get("name", ""))
    if not _NAME.match(name):
        raise ValueError(f"SF_MCP_SERVERS_JSON: server name {name!r} must be 1-40 of [A-Za-z0-9_-]")
    if not entry.get("trusted"):
        raise ValueError(
            f"SF_MCP_SERVERS_JSON: server {name!r} is not marked trusted; the worker would run it "
            'unconfined, and running MCP servers in the sandbox is not supported yet: set "trusted": true '
            "only for a server you trust"
        )
    return McpServerConfig(
        name=name,
        command=entry["command"],
        args=tuple(str(arg) for arg in entry.get("args", [])),
        env={str(k): str(v) for k, v in dict(entry.get("env", {})).items()},
        trusted=True,
    )


class McpTools:
    """The tools of the connected servers, and calls to them."""

    def __init__(self) -> None:
        self.specs: list[ToolSpec] = []
        self._routes: dict[str, tuple[ClientSession, str]] = {}

    def handles(self, name: str) -> bool:
        return name in self._routes

    async def add(self, server: str, session: ClientSession) -> None:
        await session.initialize()
        for tool in (await session.list_tools()).tools:
            name = f"{PREFIX}{server}__{tool.name}"[:64]
            description = f"[{server} MCP server] {tool.description or tool.name}"
            self.specs.append(ToolSpec(name, description, dict(tool.input_schema)))
            self._routes[name] = (session, tool.name)

    async def call(self, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        """(the result's text, whether it is an error)."""
        session, tool = self._routes[name]
        result: Any = await session.call_tool(tool, arguments, read_timeout_seconds=_CALL_SECONDS)
        texts = [getattr(part, "text", "") for part in getattr(result, "content", [])]
        return "\n".join(text for text in texts if text), bool(getattr(result, "is_error", False))


@asynccontextmanager
async def connected(servers: Sequence[McpServerConfig]) -> AsyncIterator[McpTools]:
    """The servers started and their tools listed for the block; stopped after it."""
    tools = McpTools()
    async with AsyncExitStack() as stack:
        for server in servers:
            parameters = StdioServerParameters(command=server.command, args=list(server.args), env=server.env)
            read, write = await stack.enter_async_context(stdio_client(parameters))
            session = await stack.enter_async_context(ClientSession(read, write))
            await tools.add(server.name, session)
            log.info("worker.mcp_server", server=server.name, tools=len(tools.specs))
        yield tools
