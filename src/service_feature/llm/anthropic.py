"""Claude through the official `anthropic` SDK's Messages API, with tool use and prompt caching.

Translation rules (the Messages API rejects anything else):
- our ToolResultMessages, and any UserMessage right after them, become ONE user message whose content
  starts with the `tool_result` blocks (same ids as the preceding assistant message's `tool_use` blocks), so
  that roles alternate and every tool_use is answered;
- an AssistantMessage becomes a text block (when there is text) followed by its `tool_use` blocks.

Prompt caching: `cache_control: ephemeral` marks three breakpoints — the last tool definition, the system
prompt, and the last block of the conversation. Tools and system are the stable prefix of every turn; the
conversation breakpoint lets the next turn of an agent loop read the whole history from the cache
(Anthropic allows four breakpoints; a prefix shorter than the model's minimum is simply not cached).

Truncation: when the model stops on `max_tokens` (or fills its context window) its last `tool_use` block may
be cut off, and a non-streaming response cannot tell a complete block from a truncated one. Such a turn is
returned with NO tool calls (text kept) and `stop_reason="max_tokens"`, so that nothing half-written is ever
executed; the agent tells the model its answer was cut off and asks for smaller steps.

Usage: Anthropic reports uncached input, cache writes and cache reads separately. `Usage.input_tokens` is
their sum (every prompt token, as OpenAI counts `prompt_tokens`) and `Usage.cached_input_tokens` the cache
reads, so pricing charges the reads at the cached rate and the writes at the base input rate (Anthropic bills
a 5-minute cache write at 1.25x input: cost estimates are low by a quarter of the written tokens' price).
"""

from __future__ import annotations

from typing import Any

import anthropic
from anthropic.types import Message as SdkMessage
from anthropic.types import TextBlock, ToolUseBlock

from service_feature.llm.base import (
    AssistantMessage,
    Message,
    ModelTurn,
    ProviderError,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    Usage,
    UserMessage,
)
from service_feature.llm.retry import CallFailure, RetryPolicy, call_with_retries

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_MAX_TOKENS = 16_384
DEFAULT_TIMEOUT_SECONDS = 600.0

_CACHE = {"type": "ephemeral"}
_TRUNCATED = frozenset({"max_tokens", "model_context_window_exceeded"})


class AnthropicProvider:
    """`LLMProvider` for the Anthropic Messages API (or anything speaking it at `base_url`)."""

    name = "anthropic"

    def __init__(
        self,
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """None means the default; for `api_key` and `base_url`, the SDK's ANTHROPIC_* variables."""
        self.model = model or DEFAULT_MODEL
        self.max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        self.retry = retry or RetryPolicy()
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout or DEFAULT_TIMEOUT_SECONDS,
            max_retries=0,  # retry.py is the one retry policy
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, system: str, messages: list[Message], tools: list[ToolSpec]) -> ModelTurn:
        request = build_request(self.model, self.max_tokens, system, messages, tools)
        try:
            response = await call_with_retries(
                lambda: self._send(request), provider=self.name, policy=self.retry
            )
        except anthropic.AnthropicError as exc:  # credentials missing, unparseable response, ...
            raise ProviderError(f"{self.name}: {exc}") from exc
        return parse_response(response)

    async def _send(self, request: dict[str, Any]) -> SdkMessage:
        try:
            response: SdkMessage = await self._client.messages.create(**request)
        except anthropic.APIStatusError as exc:
            message = exc.api_message or exc.message
            raise CallFailure.from_response(exc.status_code, exc.response.headers, message) from exc
        except anthropic.APIConnectionError as exc:
            raise CallFailure(None, exc.message) from exc
        return response


def build_request(
    model: str, max_tokens: int, system: str, messages: list[Message], tools: list[ToolSpec]
) -> dict[str, Any]:
    """The keyword arguments of `messages.create` for one turn, cache breakpoints included."""
    request: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": _messages(messages)}
    if system:
        request["system"] = [{"type": "text", "text": system, "cache_control": _CACHE}]
    if tools:
        request["tools"] = [
            {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
            for tool in tools
        ]
        request["tools"][-1]["cache_control"] = _CACHE
    if request["messages"]:
        request["messages"][-1]["content"][-1]["cache_control"] = _CACHE
    return request


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our conversation as Messages API turns; user-side items that follow each other share one turn."""
    turns: list[dict[str, Any]] = []
    pending_results: list[dict[str, Any]] = []
    pending_texts: list[dict[str, Any]] = []

    def flush_user_turn() -> None:
        if pending_results or pending_texts:
            turns.append({"role": "user", "content": pending_results + pending_texts})
            pending_results.clear()
            pending_texts.clear()

    for message in messages:
        if isinstance(message, ToolResultMessage):
            pending_results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content,
                    "is_error": message.is_error,
                }
            )
        elif isinstance(message, UserMessage):
            pending_texts.append({"type": "text", "text": message.content})
        else:
            flush_user_turn()
            turns.append({"role": "assistant", "content": _assistant_content(message)})
    flush_user_turn()
    return turns


def _assistant_content(message: AssistantMessage) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if message.text:
        content.append({"type": "text", "text": message.text})
    content.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in message.tool_calls
    )
    # The API rejects empty content and empty text blocks; a turn cut off before any text still needs a body.
    return content or [{"type": "text", "text": "(no output)"}]


def parse_response(response: SdkMessage) -> ModelTurn:
    text = "".join(block.text for block in response.content if isinstance(block, TextBlock))
    calls = [
        ToolCall(id=block.id, name=block.name, arguments=dict(block.input))
        for block in response.content
        if isinstance(block, ToolUseBlock)
    ]
    stop_reason = response.stop_reason or "end_turn"
    if stop_reason in _TRUNCATED:
        calls = []  # the last tool_use may be cut off: execute nothing (see module docstring)
        stop_reason = "max_tokens"
    usage = response.usage
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    return ModelTurn(
        text=text,
        tool_calls=calls,
        usage=Usage(
            input_tokens=usage.input_tokens + cache_read + cache_write,
            output_tokens=usage.output_tokens,
            cached_input_tokens=cache_read,
            cache_write_input_tokens=cache_write,
        ),
        stop_reason=stop_reason,
        model=response.model,
    )
