"""A provider wrapper that waits at a gate (the kill switch) before every model call."""

from __future__ import annotations

from service_feature.bus.base import Gate
from service_feature.llm.base import LLMProvider, Message, ModelTurn, ToolSpec


class GatedProvider:
    def __init__(self, inner: LLMProvider, gate: Gate) -> None:
        self._inner = inner
        self._gate = gate
        self.name = inner.name

    async def complete(self, system: str, messages: list[Message], tools: list[ToolSpec]) -> ModelTurn:
        await self._gate()
        return await self._inner.complete(system, messages, tools)

    async def aclose(self) -> None:
        await self._inner.aclose()
