"""The scripted provider: replays a transcript, for demos, tests and benchmarks without an API key.

`LLM_SCRIPT` names a JSON file, or a directory holding `<execution_id>.json` with `default.json` as the
fallback. Format: `{"turns": [{"text": "...", "tool_calls": [{"name": "...", "arguments": {...}}]}],
"latency_ms": 0}`. Turns are replayed in order across the feature's attempts; the tools really run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service_feature.llm.base import Message, ModelTurn, ProviderError, ToolCall, ToolSpec, Usage


class ScriptedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptedTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = ""
    tool_calls: list[ScriptedCall] = Field(default_factory=list)


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turns: list[ScriptedTurn]
    latency_ms: int = Field(0, ge=0)


def script_path(location: Path, execution_id: str) -> Path:
    if location.is_dir():
        own = location / f"{execution_id}.json"
        return own if own.exists() else location / "default.json"
    return location


def load_script(location: Path, execution_id: str) -> Script:
    path = script_path(location, execution_id)
    try:
        return Script.model_validate_json(path.read_bytes())
    except OSError as error:
        raise ProviderError(f"cannot read LLM script {path}: {error.strerror}") from None
    except ValidationError as error:
        raise ProviderError(f"invalid LLM script {path}: {error.errors()[0]['msg']}") from None


class ScriptedProvider:
    name = "scripted"

    def __init__(self, script: Script, *, start_turn: int = 0) -> None:
        self._script = script
        self._next = start_turn

    async def aclose(self) -> None:
        """Nothing to release: the script is in memory."""

    async def complete(self, system: str, messages: list[Message], tools: list[ToolSpec]) -> ModelTurn:
        known = {tool.name for tool in tools}
        for number, turn in enumerate(self._script.turns, start=1):
            for call in turn.tool_calls:
                if call.name not in known:
                    raise ProviderError(f"LLM script names unknown tool '{call.name}' in turn {number}")
        if self._next >= len(self._script.turns):
            raise ProviderError(f"LLM script exhausted after {len(self._script.turns)} turns")
        turn = self._script.turns[self._next]
        self._next += 1
        if self._script.latency_ms:
            await asyncio.sleep(self._script.latency_ms / 1000)
        return ModelTurn(
            text=turn.text,
            tool_calls=[
                ToolCall(id=f"call_{self._next}_{index}", name=call.name, arguments=call.arguments)
                for index, call in enumerate(turn.tool_calls)
            ],
            usage=Usage(),
            stop_reason="tool_use" if turn.tool_calls else "end_turn",
            model="scripted",
        )
