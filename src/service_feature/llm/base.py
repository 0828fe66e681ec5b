"""The provider-neutral conversation the agent keeps, and the interface every LLM provider implements.

The agent speaks only this vocabulary; each provider translates it to its wire format (Anthropic's
tool_use/tool_result blocks, OpenAI's tool_calls/tool messages) and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    # Set when the model's arguments could not be decoded into an object (`arguments` is then {}): the agent
    # answers the call with an error tool result instead of running it.
    parse_error: str | None = None


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0  # prompt tokens written to the cache (Anthropic bills them apart)

    def __iadd__(self, other: Usage) -> Usage:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.cache_write_input_tokens += other.cache_write_input_tokens
        return self


@dataclass(frozen=True)
class UserMessage:
    content: str
    role: Literal["user"] = "user"


@dataclass(frozen=True)
class AssistantMessage:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = "assistant"


@dataclass(frozen=True)
class ToolResultMessage:
    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    role: Literal["tool"] = "tool"


Message = UserMessage | AssistantMessage | ToolResultMessage


@dataclass
class ModelTurn:
    """One model response: text, the tools it asked for, and what it cost."""

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "end_turn"
    model: str = ""


class ProviderError(Exception):
    """A model call that cannot succeed; the message is the feature's failure reason."""


class LLMProvider(Protocol):
    name: str

    async def complete(self, system: str, messages: list[Message], tools: list[ToolSpec]) -> ModelTurn: ...

    async def aclose(self) -> None:
        """Release the client's connections (a no-op for providers without any)."""
