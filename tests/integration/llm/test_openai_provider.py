"""OpenAIProvider driven through the official SDK against a local, validating chat completions server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from service_feature.llm.base import (
    AssistantMessage,
    Message,
    ModelTurn,
    ProviderError,
    ToolResultMessage,
    UserMessage,
)
from service_feature.llm.factory import create_provider
from service_feature.llm.openai import LOCAL_SERVER_API_KEY, OpenAIProvider
from tests.support.llm_servers import (
    FAST,
    SYSTEM,
    TOOLS,
    Call,
    OpenAIWireServer,
    openai_error,
    openai_length,
    openai_text,
    openai_tool_calls,
)


@pytest.fixture
def server() -> Iterator[OpenAIWireServer]:
    with OpenAIWireServer() as wire:
        yield wire


@pytest.fixture
async def provider(server: OpenAIWireServer) -> AsyncIterator[OpenAIProvider]:
    llm = OpenAIProvider(model="gpt-6.1-terra", api_key=server.api_key, base_url=server.base_url, retry=FAST)
    yield llm
    await llm.aclose()


def after_tools(task: str, turn: ModelTurn, *results: ToolResultMessage) -> list[Message]:
    return [UserMessage(task), AssistantMessage(turn.text, tuple(turn.tool_calls)), *results]


async def test_multi_turn_exchange_with_tool_messages(
    server: OpenAIWireServer, provider: OpenAIProvider
) -> None:
    server.add(
        openai_tool_calls(Call("read_file", {"path": "README.md"}), text="Let me look."),
        openai_text("The README is empty."),
    )
    first = await provider.complete(SYSTEM, [UserMessage("Summarise the README")], TOOLS)
    assert (first.stop_reason, first.text) == ("tool_use", "Let me look.")
    [call] = first.tool_calls
    assert (call.name, call.arguments, call.parse_error) == ("read_file", {"path": "README.md"}, None)

    result = ToolResultMessage(call.id, call.name, "no such file", is_error=True)
    second = await provider.complete(SYSTEM, after_tools("Summarise the README", first, result), TOOLS)
    assert (second.text, second.tool_calls, second.stop_reason, second.model) == (
        "The README is empty.",
        [],
        "end_turn",
        "gpt-6.1-terra",
    )

    body = server.requests[1].body
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool"]
    assert body["messages"][0]["content"] == SYSTEM
    assert body["messages"][2]["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "README.md"}'},
        }
    ]
    assert body["messages"][3] == {"role": "tool", "tool_call_id": call.id, "content": "ERROR: no such file"}
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "read_file", "description": "Read a file", "parameters": TOOLS[0].parameters},
    }
    assert "max_completion_tokens" not in body
    assert server.requests[1].headers["authorization"] == f"Bearer {server.api_key}"


async def test_parallel_tool_calls(server: OpenAIWireServer, provider: OpenAIProvider) -> None:
    server.add(
        openai_tool_calls(Call("read_file", {"path": "a.py"}), Call("run_tests")),
        openai_text("Both done."),
    )
    first = await provider.complete(SYSTEM, [UserMessage("go")], TOOLS)
    a, b = first.tool_calls
    assert [(a.name, a.arguments), (b.name, b.arguments)] == [
        ("read_file", {"path": "a.py"}),
        ("run_tests", {}),
    ]

    results = [ToolResultMessage(a.id, a.name, "print()"), ToolResultMessage(b.id, b.name, "1 passed")]
    second = await provider.complete(SYSTEM, after_tools("go", first, *results), TOOLS)
    assert second.text == "Both done."
    assert [m.get("tool_call_id") for m in server.requests[1].body["messages"][-2:]] == [a.id, b.id]


async def test_the_server_rejects_unanswered_tool_calls(
    server: OpenAIWireServer, provider: OpenAIProvider
) -> None:
    server.add(openai_tool_calls(Call("read_file", {"path": "a"}), Call("run_tests")))
    first = await provider.complete(SYSTEM, [UserMessage("go")], TOOLS)
    a, b = first.tool_calls

    with pytest.raises(
        ProviderError, match=rf"openai: invalid request: .*did not have response messages: {b.id}"
    ):
        await provider.complete(SYSTEM, after_tools("go", first, ToolResultMessage(a.id, a.name, "x")), TOOLS)
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("raw", "error"),
    [('{"path": "a', "not valid JSON"), ("[1, 2]", "must be a JSON object, got list")],
    ids=["truncated-json", "not-an-object"],
)
async def test_malformed_arguments_are_marked_not_raised(
    server: OpenAIWireServer, provider: OpenAIProvider, raw: str, error: str
) -> None:
    server.add(openai_tool_calls(Call("read_file", raw), Call("run_tests", "")), openai_text("Retrying."))
    turn = await provider.complete(SYSTEM, [UserMessage("go")], TOOLS)
    bad, empty = turn.tool_calls
    assert (bad.name, bad.arguments) == ("read_file", {})
    assert bad.parse_error is not None
    assert error in bad.parse_error
    assert (empty.arguments, empty.parse_error) == ({}, None)

    results = [
        ToolResultMessage(bad.id, bad.name, bad.parse_error, is_error=True),
        ToolResultMessage(empty.id, empty.name, "ok"),
    ]
    assert (await provider.complete(SYSTEM, after_tools("go", turn, *results), TOOLS)).text == "Retrying."


async def test_length_finish_drops_the_cut_off_tool_call(
    server: OpenAIWireServer, provider: OpenAIProvider
) -> None:
    server.add(
        openai_length("Writing", cut_call=Call("read_file", '{"path": "very/long')),
        openai_length("A very long essay"),
        openai_text("Smaller steps then."),
    )
    cut = await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert (cut.stop_reason, cut.tool_calls, cut.text) == ("max_tokens", [], "Writing")
    essay = await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert (essay.stop_reason, essay.text) == ("max_tokens", "A very long essay")

    conversation: list[Message] = [
        UserMessage("a"),
        AssistantMessage(cut.text, tuple(cut.tool_calls)),
        UserMessage("Your answer was cut off."),
    ]
    assert (await provider.complete(SYSTEM, conversation, TOOLS)).text == "Smaller steps then."


async def test_tool_calls_with_a_stop_finish_are_tool_use(
    server: OpenAIWireServer, provider: OpenAIProvider
) -> None:
    server.add(openai_tool_calls(Call("launch_rockets", {"count": 3}), finish_reason="stop"))
    turn = await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert turn.stop_reason == "tool_use"
    [call] = turn.tool_calls
    assert (call.name, call.arguments) == ("launch_rockets", {"count": 3})  # unknown tools pass through


async def test_usage_with_cached_tokens(server: OpenAIWireServer, provider: OpenAIProvider) -> None:
    server.add(
        openai_text(
            "hi",
            usage={
                "prompt_tokens": 1200,
                "completion_tokens": 80,
                "prompt_tokens_details": {"cached_tokens": 1024},
            },
        )
    )
    turn = await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert (turn.usage.input_tokens, turn.usage.cached_input_tokens, turn.usage.output_tokens) == (
        1200,
        1024,
        80,
    )


async def test_max_tokens_is_sent_as_max_completion_tokens(server: OpenAIWireServer) -> None:
    server.add(openai_text("hi"))
    llm = create_provider(
        "openai", model="qwen3-coder:30b", api_key=server.api_key, base_url=server.base_url, max_tokens=321
    )
    assert isinstance(llm, OpenAIProvider)
    try:
        await llm.complete("", [UserMessage("a")], [])
    finally:
        await llm.aclose()
    body = server.requests[0].body
    assert (body["model"], body["max_completion_tokens"]) == ("qwen3-coder:30b", 321)
    assert [m["role"] for m in body["messages"]] == ["user"]  # no empty system message
    assert "tools" not in body


async def test_local_server_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIWireServer([openai_text("local")], api_key=LOCAL_SERVER_API_KEY) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        llm = OpenAIProvider(retry=FAST)
        try:
            assert (await llm.complete(SYSTEM, [UserMessage("a")], TOOLS)).text == "local"
        finally:
            await llm.aclose()
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(ProviderError, match="openai: no API key"):
        OpenAIProvider()


async def test_429_waits_as_long_as_retry_after_says(
    server: OpenAIWireServer, provider: OpenAIProvider
) -> None:
    server.add(openai_error(429, retry_after=0.4), openai_text("with header"))
    server.add(openai_error(429), openai_text("without header"))
    assert (await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)).text == "with header"
    assert (await provider.complete(SYSTEM, [UserMessage("b")], TOOLS)).text == "without header"

    times = [request.received_at for request in server.requests]
    assert len(times) == 4
    assert times[1] - times[0] >= 0.4
    assert times[3] - times[2] < 0.4


async def test_server_error_then_success(server: OpenAIWireServer, provider: OpenAIProvider) -> None:
    server.add(openai_error(500), openai_error(503), openai_text("ok"))
    assert (await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)).text == "ok"
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("status", "expected"),
    [(429, "openai: rate limited after 3 attempts"), (502, "openai: provider unavailable after 3 attempts")],
)
async def test_retries_exhausted(
    server: OpenAIWireServer, provider: OpenAIProvider, status: int, expected: str
) -> None:
    server.add(*[openai_error(status) for _ in range(3)])
    with pytest.raises(ProviderError, match=expected):
        await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert len(server.requests) == 3


async def test_bad_key_fails_at_once_with_authentication_failed(server: OpenAIWireServer) -> None:
    llm = OpenAIProvider(api_key="sk-wrong", base_url=server.base_url, retry=FAST)
    try:
        with pytest.raises(ProviderError, match=r"openai: authentication failed .*Incorrect API key"):
            await llm.complete(SYSTEM, [UserMessage("a")], TOOLS)
    finally:
        await llm.aclose()
    assert len(server.requests) == 1


async def test_bad_request_carries_the_provider_message(
    server: OpenAIWireServer, provider: OpenAIProvider
) -> None:
    server.add(openai_error(400, "This model's maximum context length is 8192 tokens"))
    with pytest.raises(ProviderError, match="openai: invalid request: This model's maximum context length"):
        await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert len(server.requests) == 1
