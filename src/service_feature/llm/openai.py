"""OpenAI-compatible chat completions through the official `openai` SDK, with tool calls.

One provider serves OpenAI itself and every server that speaks its chat completions API (Ollama, vLLM,
llama.cpp's server, OpenRouter): only `base_url`, the key and the model change. Local servers accept any key,
so when a `base_url` is configured and no key is, a placeholder key is sent.

Translation: an AssistantMessage becomes an assistant message with `tool_calls` (arguments re-encoded as a
JSON string); each ToolResultMessage becomes a `role: "tool"` message with its `tool_call_id`. Chat
completions have no error flag on tool results, so a failed tool's content is prefixed with "ERROR: ".

Model output is normalised to the vocabulary of `ModelTurn.stop_reason` that the Anthropic provider uses:
`tool_calls` -> "tool_use" (also when a server says "stop" but returns tool calls, as Ollama does),
`stop` -> "end_turn", `length` -> "max_tokens". A "max_tokens" turn carries no tool calls: their arguments
may be cut off, so nothing half-written is executed (the agent tells the model its answer was cut off).

Arguments that are not a JSON object do not raise: the call is returned with `arguments={}` and
`parse_error` set, so the agent can answer it with an error tool result and the model can try again.

Usage: `prompt_tokens` (which includes cached tokens) -> input_tokens, `completion_tokens` -> output_tokens,
`prompt_tokens_details.cached_tokens` -> cached_input_tokens. `max_tokens`, when set, is sent as
`max_completion_tokens` (OpenAI's reasoning models reject the older `max_tokens`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall

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

DEFAULT_MODEL = "gpt-6.1-terra"
DEFAULT_TIMEOUT_SECONDS = 600.0
LOCAL_SERVER_API_KEY = "not-needed"

_STOP_REASONS = {
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "stop": "end_turn",
    "length": "max_tokens",
}


class OpenAIProvider:
    """`LLMProvider` for OpenAI's chat completions API (or anything speaking it at `base_url`)."""

    name = "openai"

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
        """None means the default; for `api_key` and `base_url`, OPENAI_API_KEY and OPENAI_BASE_URL."""
        self.model = model or DEFAULT_MODEL
        self.max_tokens = max_tokens
        self.retry = retry or RetryPolicy()
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if base_url is None:
                raise ProviderError(
                    "openai: no API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)"
                )
            api_key = LOCAL_SERVER_API_KEY
        self._client = openai.AsyncOpenAI(
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
        except openai.OpenAIError as exc:  # unparseable response, ...
            raise ProviderError(f"{self.name}: {exc}") from exc
        return parse_response(response)

    async def _send(self, request: dict[str, Any]) -> ChatCompletion:
        try:
            response: ChatCompletion = await self._client.chat.completions.create(**request)
        except openai.APIStatusError as exc:
            body = exc.body
            message = body.get("message") if isinstance(body, dict) else None
            raise CallFailure.from_response(
                exc.status_code, exc.response.headers, str(message or exc.message)
            ) from exc
        except openai.APIConnectionError as exc:
            raise CallFailure(None, exc.message) from exc
        return response


def build_request(
    model: str, max_tokens: int | None, system: str, messages: list[Message], tools: list[ToolSpec]
) -> dict[str, Any]:
    """The keyword arguments of `chat.completions.create` for one turn."""
    wire: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    wire.extend(_message(message) for message in messages)
    request: dict[str, Any] = {"model": model, "messages": wire}
    if tools:
        request["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                },
            }
            for tool in tools
        ]
    if max_tokens is not None:
        request["max_completion_tokens"] = max_tokens
    return request


def _message(message: Message) -> dict[str, Any]:
    if isinstance(message, UserMessage):
        return {"role": "user", "content": message.content}
    if isinstance(message, ToolResultMessage):
        content = f"ERROR: {message.content}" if message.is_error else message.content
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": content}
    return _assistant_message(message)


def _assistant_message(message: AssistantMessage) -> dict[str, Any]:
    if not message.tool_calls:
        return {"role": "assistant", "content": message.text}
    return {
        "role": "assistant",
        "content": message.text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ],
    }


def parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """The arguments object of a tool call, or ({}, why not) — a model's JSON is not always valid."""
    if not raw.strip():
        return {}, None  # some local servers send "" for a call without arguments
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return {}, f"arguments are not valid JSON ({exc}): {raw[:200]}"
    if not isinstance(value, dict):
        return {}, f"arguments must be a JSON object, got {type(value).__name__}: {raw[:200]}"
    return value, None


def parse_response(response: ChatCompletion) -> ModelTurn:
    if not response.choices:
        raise ProviderError("openai: the response has no choices")
    choice = response.choices[0]
    calls = []
    for tool_call in choice.message.tool_calls or []:
        if isinstance(tool_call, ChatCompletionMessageFunctionToolCall):
            arguments, error = parse_arguments(tool_call.function.arguments)
            calls.append(
                ToolCall(
                    id=tool_call.id, name=tool_call.function.name, arguments=arguments, parse_error=error
                )
            )
    stop_reason = _STOP_REASONS.get(choice.finish_reason, choice.finish_reason)
    if stop_reason == "max_tokens":
        calls = []  # possibly cut-off arguments: execute nothing (see module docstring)
    elif calls:
        stop_reason = "tool_use"
    usage = response.usage
    details = usage.prompt_tokens_details if usage else None
    return ModelTurn(
        text=choice.message.content or "",
        tool_calls=calls,
        usage=Usage(
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            cached_input_tokens=(details.cached_tokens or 0) if details else 0,
        ),
        stop_reason=stop_reason,
        model=response.model,
    )
