"""The model review through the real providers and their SDKs, against local servers that validate the wire
format: the report comes back as findings, a text answer is retried once, a failing provider is a note; and
the reviewer service's model calls wait at the kill switch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from service_feature.config import ReviewerSettings
from service_feature.llm.anthropic import AnthropicProvider
from service_feature.llm.base import LLMProvider
from service_feature.llm.openai import OpenAIProvider
from service_feature.llm.retry import RetryPolicy
from service_feature.models import Finding, FindingCategory, Language, Severity, Specification
from service_feature.reviewer.model_review import TOOL_NAME, model_review
from service_feature.reviewer.service import ReviewerService
from tests.support.llm_servers import (
    AnthropicWireServer,
    Call,
    OpenAIWireServer,
    ScriptedResponse,
    anthropic_error,
    anthropic_text,
    anthropic_tool_use,
    openai_error,
    openai_text,
    openai_tool_calls,
)

FAST = RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.01)
SPEC = Specification(
    title="Add greet()", requirements=["greet(name) returns a greeting"], language=Language.python
)
DIFF = """diff --git a/src/app/greeting.py b/src/app/greeting.py
new file mode 100644
--- /dev/null
+++ b/src/app/greeting.py
@@ -0,0 +1,3 @@
+import app.db
+def greet(name):
+    return app.db.lookup(name)
"""
REPORT = {
    "findings": [
        {
            "rule_id": "layering",
            "category": "architecture",
            "severity": "high",
            "file": "src/app/greeting.py",
            "line": 1,
            "message": "greeting reaches the database layer directly",
        }
    ],
    "summary": "works, but breaks the layering",
}
EXPECTED = Finding(
    rule_id="llm.layering",
    category=FindingCategory.architecture,
    severity=Severity.high,
    file="src/app/greeting.py",
    line=1,
    message="greeting reaches the database layer directly",
)


@dataclass(frozen=True)
class Wire:
    server: type[AnthropicWireServer] | type[OpenAIWireServer]
    provider: Callable[[str, str], AnthropicProvider | OpenAIProvider]  # (base_url, api_key) -> provider
    call: Callable[[Call], ScriptedResponse]
    text: Callable[[str], ScriptedResponse]
    error: Callable[[int], ScriptedResponse]
    tools: Callable[[dict[str, Any]], list[str]]  # the tool names a request offers


ANTHROPIC = Wire(
    server=AnthropicWireServer,
    provider=lambda url, key: AnthropicProvider(api_key=key, base_url=url, timeout=5, retry=FAST),
    call=lambda call: anthropic_tool_use(call),
    text=lambda text: anthropic_text(text),
    error=lambda status: anthropic_error(status),
    tools=lambda body: [tool["name"] for tool in body["tools"]],
)
OPENAI = Wire(
    server=OpenAIWireServer,
    provider=lambda url, key: OpenAIProvider(api_key=key, base_url=url, timeout=5, retry=FAST),
    call=lambda call: openai_tool_calls(call),
    text=lambda text: openai_text(text),
    error=lambda status: openai_error(status),
    tools=lambda body: [tool["function"]["name"] for tool in body["tools"]],
)


@pytest.fixture(params=[ANTHROPIC, OPENAI], ids=["anthropic", "openai"])
def wire(request: pytest.FixtureRequest) -> Wire:
    chosen: Wire = request.param
    return chosen


@pytest.fixture
async def served(wire: Wire) -> AsyncIterator[tuple[AnthropicWireServer | OpenAIWireServer, LLMProvider]]:
    with wire.server() as server:
        provider = wire.provider(server.base_url, server.api_key)
        yield server, provider
        await provider.aclose()


async def test_the_report_comes_back_as_findings(
    wire: Wire, served: tuple[AnthropicWireServer | OpenAIWireServer, LLMProvider]
) -> None:
    server, provider = served
    server.add(wire.call(Call(TOOL_NAME, REPORT)))

    result = await model_review(provider, SPEC, DIFF)

    assert result.findings == [EXPECTED]
    assert result.summary == "works, but breaks the layering"
    assert result.usage.input_tokens > 0
    [request] = server.requests
    assert wire.tools(request.body) == [TOOL_NAME]
    assert "+import app.db" in str(request.body["messages"])


async def test_a_text_answer_is_retried_once_over_the_wire(
    wire: Wire, served: tuple[AnthropicWireServer | OpenAIWireServer, LLMProvider]
) -> None:
    server, provider = served
    server.add(wire.text("Looks good."), wire.call(Call(TOOL_NAME, REPORT)))

    result = await model_review(provider, SPEC, DIFF)

    assert result.findings == [EXPECTED]
    assert len(server.requests) == 2
    assert f"Call {TOOL_NAME} now" in str(server.requests[1].body["messages"][-1])


async def test_invalid_arguments_are_answered_with_a_tool_error_the_api_accepts(
    wire: Wire, served: tuple[AnthropicWireServer | OpenAIWireServer, LLMProvider]
) -> None:
    server, provider = served
    server.add(wire.call(Call(TOOL_NAME, {"findings": "none"})), wire.call(Call(TOOL_NAME, REPORT)))

    result = await model_review(provider, SPEC, DIFF)

    assert result.findings == [EXPECTED]  # the second request passed the server's tool pairing checks
    assert "findings: Input should be a valid list" in str(server.requests[1].body["messages"])


async def test_text_twice_gives_an_info_finding(
    wire: Wire, served: tuple[AnthropicWireServer | OpenAIWireServer, LLMProvider]
) -> None:
    server, provider = served
    server.add(wire.text("Looks good."), wire.text("Still good."))

    result = await model_review(provider, SPEC, DIFF)

    [note] = result.findings
    assert (note.rule_id, note.severity) == ("llm.no-findings", Severity.info)
    assert note.message.startswith("model review returned no structured findings")
    assert server.remaining == 0


async def test_a_storm_of_server_errors_is_an_info_finding_not_an_exception(
    wire: Wire, served: tuple[AnthropicWireServer | OpenAIWireServer, LLMProvider]
) -> None:
    server, provider = served
    server.add(*[wire.error(500)] * FAST.max_attempts)

    result = await model_review(provider, SPEC, DIFF)

    [note] = result.findings
    assert (note.rule_id, note.severity) == ("llm.error", Severity.info)
    assert "provider unavailable after 3 attempts (HTTP 500)" in note.message
    assert len(server.requests) == FAST.max_attempts


@dataclass
class Switch:
    """A kill switch that is engaged until `released` is set."""

    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_released(self) -> None:
        await self.released.wait()


def reviewer(switch: Switch) -> ReviewerService:
    """The service with only what its model review uses: settings and the kill switch."""
    unused = cast(Any, None)
    return ReviewerService(ReviewerSettings(), unused, unused, unused, unused, cast(Any, switch))


async def test_the_reviewers_model_calls_wait_at_the_kill_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    with AnthropicWireServer([anthropic_tool_use(Call(TOOL_NAME, REPORT))]) as server:
        for name, value in {"LLM_PROVIDER": "anthropic", **server.env}.items():
            monkeypatch.setenv(name, value)
        switch = Switch()
        review = asyncio.create_task(reviewer(switch)._model_review("f1", SPEC, DIFF))
        await asyncio.sleep(0.3)
        assert (server.requests, review.done()) == ([], False)

        switch.released.set()
        result = await asyncio.wait_for(review, 10)
        assert result is not None
        assert result.findings == [EXPECTED]
        assert len(server.requests) == 1


async def test_a_provider_that_cannot_be_built_is_a_note_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    result = await reviewer(Switch())._model_review("f1", SPEC, DIFF)

    assert result is not None
    [note] = result.findings
    assert (note.rule_id, note.severity) == ("llm.error", Severity.info)
    assert note.message.startswith("model review failed: openai: no API key")


async def test_no_model_is_asked_without_a_real_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "scripted")

    assert await reviewer(Switch())._model_review("f1", SPEC, DIFF) is None
