"""AnthropicProvider driven through the official SDK against a local, validating Messages API server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from service_feature.llm.anthropic import AnthropicProvider
from service_feature.llm.base import (
    AssistantMessage,
    Message,
    ModelTurn,
    ProviderError,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from service_feature.llm.factory import create_provider
from service_feature.llm.openai import OpenAIProvider
from service_feature.llm.retry import RetryPolicy
from tests.support.llm_servers import (
    FAST,
    SYSTEM,
    TOOLS,
    AnthropicWireServer,
    Call,
    ScriptedResponse,
    anthropic_error,
    anthropic_max_tokens,
    anthropic_text,
    anthropic_tool_use,
    drop_connection,
)


@pytest.fixture
def server() -> Iterator[AnthropicWireServer]:
    with AnthropicWireServer() as wire:
        yield wire


@pytest.fixture
async def provider(server: AnthropicWireServer) -> AsyncIterator[AnthropicProvider]:
    llm = AnthropicProvider(
        model="claude-sonnet-5-5", api_key=server.api_key, base_url=server.base_url, timeout=5, retry=FAST
    )
    yield llm
    await llm.aclose()


def after_tools(task: str, turn: ModelTurn, *results: ToolResultMessage) -> list[Message]:
    return [UserMessage(task), AssistantMessage(turn.text, tuple(turn.tool_calls)), *results]


async def test_multi_turn_exchange_with_tool_results(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    server.add(
        anthropic_tool_use(Call("read_file", {"path": "README.md"}), text="Let me look."),
        anthropic_text("The README is empty."),
    )

    first = await provider.complete(SYSTEM, [UserMessage("Summarise the README")], TOOLS)
    assert first.stop_reason == "tool_use"
    assert first.text == "Let me look."
    [call] = first.tool_calls
    assert (call.name, call.arguments, call.parse_error) == ("read_file", {"path": "README.md"}, None)

    result = ToolResultMessage(call.id, call.name, "no such file", is_error=True)
    second = await provider.complete(SYSTEM, after_tools("Summarise the README", first, result), TOOLS)
    assert (second.text, second.tool_calls, second.stop_reason) == ("The README is empty.", [], "end_turn")
    assert second.model == "claude-sonnet-5-5"

    body = server.requests[1].body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][:2] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": call.id, "name": "read_file", "input": {"path": "README.md"}},
    ]
    tool_result = body["messages"][2]["content"][0]
    assert tool_result["type"] == "tool_result"
    assert (tool_result["tool_use_id"], tool_result["content"], tool_result["is_error"]) == (
        call.id,
        "no such file",
        True,
    )
    assert server.requests[1].headers["authorization"] == f"Bearer {server.api_key}"
    assert "anthropic-version" in server.requests[1].headers


async def test_parallel_tool_calls_are_answered_in_one_user_message(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    server.add(
        anthropic_tool_use(Call("read_file", {"path": "a.py"}), Call("run_tests", {})),
        anthropic_text("Both done."),
    )
    first = await provider.complete(SYSTEM, [UserMessage("go")], TOOLS)
    assert [c.name for c in first.tool_calls] == ["read_file", "run_tests"]
    a, b = first.tool_calls
    assert a.id != b.id

    conversation = [
        *after_tools(
            "go", first, ToolResultMessage(a.id, a.name, "print()"), ToolResultMessage(b.id, b.name, "ok")
        ),
        UserMessage("Remember the style guide."),
    ]
    second = await provider.complete(SYSTEM, conversation, TOOLS)
    assert second.text == "Both done."

    last = server.requests[1].body["messages"][-1]
    assert last["role"] == "user"
    assert [(block["type"], block.get("tool_use_id")) for block in last["content"]] == [
        ("tool_result", a.id),
        ("tool_result", b.id),
        ("text", None),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda a, b: [ToolResultMessage(a.id, a.name, "x")], id="one-of-two-unanswered"),
        pytest.param(
            lambda a, b: [
                ToolResultMessage(a.id, a.name, "x"),
                ToolResultMessage("toolu_bogus", b.name, "y"),
            ],
            id="wrong-id",
        ),
    ],
)
async def test_the_server_rejects_what_the_real_api_rejects(
    server: AnthropicWireServer,
    provider: AnthropicProvider,
    answer: Callable[[ToolCall, ToolCall], list[ToolResultMessage]],
) -> None:
    server.add(anthropic_tool_use(Call("read_file", {"path": "a"}), Call("run_tests", {})))
    first = await provider.complete(SYSTEM, [UserMessage("go")], TOOLS)
    a, b = first.tool_calls
    results = answer(a, b)

    with pytest.raises(ProviderError, match=r"invalid request: .*tool_use"):
        await provider.complete(SYSTEM, after_tools("go", first, *results), TOOLS)
    assert len(server.requests) == 2  # a 400 is not retried


async def test_cache_breakpoints_on_tools_system_and_conversation(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    server.add(anthropic_text("hi"))
    await provider.complete(SYSTEM, [UserMessage("hello")], TOOLS)

    body = server.requests[0].body
    ephemeral = {"type": "ephemeral"}
    assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": ephemeral}]
    assert [tool.get("cache_control") for tool in body["tools"]] == [None, ephemeral]
    assert body["messages"][-1]["content"][-1]["cache_control"] == ephemeral


async def test_usage_counts_cache_reads_and_writes_as_input(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    server.add(
        anthropic_text(
            "hi",
            usage={
                "input_tokens": 100,
                "output_tokens": 50,
                "cache_creation_input_tokens": 20,
                "cache_read_input_tokens": 300,
            },
        )
    )
    turn = await provider.complete(SYSTEM, [UserMessage("hello")], TOOLS)
    assert (turn.usage.input_tokens, turn.usage.cached_input_tokens, turn.usage.output_tokens) == (
        420,
        300,
        50,
    )


async def test_model_and_max_tokens_are_configurable(server: AnthropicWireServer) -> None:
    server.add(anthropic_text("hi"))
    llm = AnthropicProvider(
        model="claude-haiku-5-5", max_tokens=123, api_key=server.api_key, base_url=server.base_url, retry=FAST
    )
    try:
        turn = await llm.complete(SYSTEM, [UserMessage("hello")], [])
    finally:
        await llm.aclose()
    body = server.requests[0].body
    assert (body["model"], body["max_tokens"], turn.model) == ("claude-haiku-5-5", 123, "claude-haiku-5-5")
    assert "tools" not in body


async def test_base_url_and_key_come_from_the_environment(
    server: AnthropicWireServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    server.add(anthropic_text("from env"))
    llm = create_provider("anthropic", model=None, api_key=None, base_url=None, retry=FAST)
    assert isinstance(llm, AnthropicProvider)
    try:
        turn = await llm.complete(SYSTEM, [UserMessage("hello")], TOOLS)
    finally:
        await llm.aclose()
    assert turn.text == "from env"
    assert len(server.requests) == 1


def test_factory_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match=r"unknown LLM provider 'gemini'.*anthropic, openai"):
        create_provider("gemini", model=None, api_key=None, base_url=None)
    assert isinstance(create_provider("openai", model="m", api_key="k", base_url=None), OpenAIProvider)


@pytest.mark.parametrize(
    "rate_limited",
    [anthropic_error(429, retry_after_ms=400), anthropic_error(429, retry_after=0.4)],
    ids=["retry-after-ms", "retry-after"],
)
async def test_429_waits_as_long_as_retry_after_says(
    server: AnthropicWireServer, provider: AnthropicProvider, rate_limited: ScriptedResponse
) -> None:
    waited = 0.4
    server.add(rate_limited, anthropic_text("with header"))
    server.add(anthropic_error(429), anthropic_text("without header"))

    assert (await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)).text == "with header"
    assert (await provider.complete(SYSTEM, [UserMessage("b")], TOOLS)).text == "without header"

    times = [request.received_at for request in server.requests]
    assert len(times) == 4
    with_header, without_header = times[1] - times[0], times[3] - times[2]
    assert with_header >= waited
    assert without_header < waited  # backoff from initial_wait=1 ms: the header made the difference


async def test_retry_after_is_capped_by_max_wait(server: AnthropicWireServer) -> None:
    server.add(anthropic_error(429, retry_after=30), anthropic_text("soon enough"))
    llm = AnthropicProvider(
        api_key=server.api_key,
        base_url=server.base_url,
        retry=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.1),
    )
    try:
        turn = await llm.complete(SYSTEM, [UserMessage("a")], TOOLS)
    finally:
        await llm.aclose()
    assert turn.text == "soon enough"
    assert server.requests[1].received_at - server.requests[0].received_at < 5


async def test_overloaded_and_server_errors_are_retried(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    server.add(anthropic_error(529), anthropic_error(500), anthropic_text("third time lucky"))
    turn = await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert turn.text == "third time lucky"
    assert len(server.requests) == 3


async def test_dropped_connection_and_timeout_are_retried(server: AnthropicWireServer) -> None:
    server.add(
        drop_connection(),
        ScriptedResponse(delay=2.0, body=anthropic_text("too late").body),
        anthropic_text("finally"),
    )
    llm = AnthropicProvider(api_key=server.api_key, base_url=server.base_url, timeout=0.5, retry=FAST)
    try:
        turn = await llm.complete(SYSTEM, [UserMessage("a")], TOOLS)
    finally:
        await llm.aclose()
    assert turn.text == "finally"
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, "anthropic: rate limited after 3 attempts"),
        (529, "anthropic: provider unavailable after 3 attempts"),
    ],
)
async def test_retries_exhausted(
    server: AnthropicWireServer, provider: AnthropicProvider, status: int, expected: str
) -> None:
    server.add(*[anthropic_error(status) for _ in range(4)])
    with pytest.raises(ProviderError, match=expected):
        await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert len(server.requests) == 3
    assert server.remaining == 1


async def test_bad_key_fails_at_once_with_authentication_failed(server: AnthropicWireServer) -> None:
    llm = AnthropicProvider(api_key="sk-wrong", base_url=server.base_url, retry=FAST)
    try:
        with pytest.raises(ProviderError, match="anthropic: authentication failed") as failure:
            await llm.complete(SYSTEM, [UserMessage("a")], TOOLS)
    finally:
        await llm.aclose()
    assert "invalid x-api-key" in str(failure.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (403, "anthropic: permission denied .*not allowed here"),
        (400, "anthropic: invalid request: not allowed here"),
        (404, "anthropic: not found .*not allowed here"),
    ],
)
async def test_client_errors_are_not_retried(
    server: AnthropicWireServer, provider: AnthropicProvider, status: int, expected: str
) -> None:
    server.add(anthropic_error(status, "not allowed here"), anthropic_text("never"))
    with pytest.raises(ProviderError, match=expected):
        await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert len(server.requests) == 1


async def test_max_tokens_stop_drops_the_cut_off_tool_call(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    server.add(
        anthropic_max_tokens("Writing the file now", cut_call=Call("read_file", {"pa": ""})),
        anthropic_max_tokens(),
        anthropic_text("Smaller steps then."),
    )
    turn = await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert (turn.stop_reason, turn.tool_calls, turn.text) == ("max_tokens", [], "Writing the file now")

    empty = await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    assert (empty.stop_reason, empty.text) == ("max_tokens", "")

    # What the agent sends next is a valid conversation: no tool_use is left unanswered, no empty text block.
    conversation: list[Message] = [
        UserMessage("a"),
        AssistantMessage(turn.text, tuple(turn.tool_calls)),
        UserMessage("Your answer was cut off."),
        AssistantMessage(empty.text, ()),
        UserMessage("Cut off again: smaller steps."),
    ]
    assert (await provider.complete(SYSTEM, conversation, TOOLS)).text == "Smaller steps then."


async def test_a_call_to_an_unknown_tool_is_passed_through(
    server: AnthropicWireServer, provider: AnthropicProvider
) -> None:
    server.add(anthropic_tool_use(Call("launch_rockets", {"count": 3})), anthropic_text("Sorry."))
    turn = await provider.complete(SYSTEM, [UserMessage("a")], TOOLS)
    [call] = turn.tool_calls
    assert (call.name, call.arguments) == ("launch_rockets", {"count": 3})

    refusal = ToolResultMessage(call.id, call.name, "unknown tool launch_rockets", is_error=True)
    assert (await provider.complete(SYSTEM, after_tools("a", turn, refusal), TOOLS)).text == "Sorry."


def test_the_server_accepts_x_api_key_as_older_sdks_send_it(server: AnthropicWireServer) -> None:
    server.add(anthropic_text("hello"))
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    url = f"{server.base_url}/v1/messages"
    assert httpx.post(url, json=body, headers={"x-api-key": "nope"}).status_code == 401
    response = httpx.post(url, json=body, headers={"x-api-key": server.api_key})
    assert response.status_code == 200
    assert response.json()["content"] == [{"type": "text", "text": "hello"}]
