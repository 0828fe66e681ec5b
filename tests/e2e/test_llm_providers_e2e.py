"""Whole features through the HTTP API with LLM_PROVIDER=anthropic and =openai, each against a local server
speaking the provider's wire format (the official SDK over real HTTP), on a real git origin, to a delivered
branch. The same server answers the agent and the reviewer's model review, told apart by the tool offered."""

import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service_feature.llm.base import Usage
from service_feature.llm.pricing import cost_usd
from service_feature.reviewer.model_review import TOOL_NAME
from tests.support.llm_servers import (
    AnthropicWireServer,
    Call,
    OpenAIWireServer,
    RecordedRequest,
    ScriptedResponse,
    anthropic_tool_use,
    openai_tool_calls,
    validate_anthropic_request,
    validate_openai_request,
)
from tests.support.platform import (
    FINAL,
    GREETING,
    GREETING_TEST,
    demo_origin_with,
    feature_request,
    running_platform,
    wait_for,
)

CALCULATOR_IN_MAP = "src/demo_app/calculator.py\n  def add(left: int, right: int) -> int"
CALLS = [
    [Call("list_files", {"path": "."})],
    [
        Call("write_file", {"path": "src/demo_app/greeting.py", "content": GREETING}),
        Call("write_file", {"path": "tests/test_greeting.py", "content": GREETING_TEST}),
    ],
    [Call("finish", {"summary": "added greet()"})],
]


@dataclass(frozen=True)
class Wire:
    """One provider's side of the test: its server, how it scripts a turn, what its requests look like."""

    kind: str
    server: type[AnthropicWireServer] | type[OpenAIWireServer]
    respond: Callable[[list[Call]], ScriptedResponse]
    usage: Usage  # what each scripted turn reports, in our terms
    validate: Callable[[Any], str | None]
    system: Callable[[dict[str, Any]], str]
    prefix: Callable[[dict[str, Any]], Any]  # the part of a request that must not change between turns
    tools: Callable[[dict[str, Any]], list[str]]  # the names of the tools a request offers


ANTHROPIC = Wire(
    kind="anthropic",
    server=AnthropicWireServer,
    respond=lambda calls: anthropic_tool_use(
        *calls,
        usage={
            "input_tokens": 200,
            "cache_read_input_tokens": 1500,
            "cache_creation_input_tokens": 300,
            "output_tokens": 40,
        },
    ),
    usage=Usage(input_tokens=2000, output_tokens=40, cached_input_tokens=1500, cache_write_input_tokens=300),
    validate=validate_anthropic_request,
    system=lambda body: str(body["system"][0]["text"]),
    prefix=lambda body: (body["system"], body["tools"]),
    tools=lambda body: [tool["name"] for tool in body["tools"]],
)
OPENAI = Wire(
    kind="openai",
    server=OpenAIWireServer,
    respond=lambda calls: openai_tool_calls(
        *calls,
        usage={
            "prompt_tokens": 1700,
            "completion_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 1024},
        },
    ),
    usage=Usage(input_tokens=1700, output_tokens=40, cached_input_tokens=1024),
    validate=validate_openai_request,
    system=lambda body: str(body["messages"][0]["content"]),
    prefix=lambda body: (body["messages"][0], body["tools"]),
    tools=lambda body: [tool["function"]["name"] for tool in body["tools"]],
)
NO_FINDINGS = {"findings": [], "summary": "adds greet() with a test"}


@dataclass
class AgentAndReviewer:
    """Answers the agent's turns in order and the reviewer with its report, told apart by the tool offered."""

    wire: Wire
    report: dict[str, Any]
    agent: deque[list[Call]] = field(default_factory=lambda: deque(CALLS))

    def is_review(self, request: RecordedRequest) -> bool:
        return TOOL_NAME in self.wire.tools(request.body)

    def __call__(self, request: RecordedRequest) -> ScriptedResponse:
        calls = [Call(TOOL_NAME, self.report)] if self.is_review(request) else self.agent.popleft()
        return self.wire.respond(calls)

    def responses(self) -> list["AgentAndReviewer"]:
        return [self] * (len(self.agent) + 1)


def _env(wire: Wire, server: AnthropicWireServer | OpenAIWireServer, api_key: str) -> dict[str, str]:
    prefix = wire.kind.upper()
    return {"LLM_PROVIDER": wire.kind, f"{prefix}_API_KEY": api_key, f"{prefix}_BASE_URL": server.base_url}


@pytest.mark.parametrize("wire", [ANTHROPIC, OPENAI], ids=lambda wire: wire.kind)
async def test_a_feature_is_built_by_the_provider_over_its_wire_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path, wire: Wire
) -> None:
    answers = AgentAndReviewer(wire, NO_FINDINGS)
    with wire.server(answers.responses()) as server:
        env = _env(wire, server, server.api_key)
        async with running_platform(tmp_path, monkeypatch, scripts, **env) as api:
            await api.post("/api/v1/features", json=feature_request(origin, "llm1"))
            feature = await wait_for(api, "llm1", FINAL)
            transcript = (await api.get("/api/v1/features/llm1/transcript")).json()["entries"]
            review = (await api.get("/api/v1/features/llm1/review")).json()
        recorded: list[RecordedRequest] = list(server.requests)

    assert feature["status"] == "delivered", feature["failure_reason"]
    assert feature["delivered_branch"] == "feature/llm1"

    assert [wire.validate(request.body) for request in recorded] == [None] * 4
    assert [answers.is_review(request) for request in recorded] == [False, False, False, True]
    requests = recorded[:3]
    system = wire.system(requests[0].body)
    assert "<repository_map>" in system
    assert CALCULATOR_IN_MAP in system
    assert len({repr(wire.prefix(request.body)) for request in requests}) == 1  # cacheable prefix
    if wire is ANTHROPIC:
        for request in requests:
            body = request.body
            assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
            assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
            assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}

    models = [entry["content"] for entry in transcript if entry["kind"] == "model"]
    tools = [entry["content"] for entry in transcript if entry["kind"] == "tool"]
    assert len(models) == 3
    assert [tool["name"] for tool in tools] == ["list_files", "write_file", "write_file", "finish"]
    assert "src/demo_app/calculator.py" in tools[0]["result"]
    model = models[0]["model"]
    per_call = cost_usd(model, wire.usage)
    assert per_call > 0
    assert [entry["cost_usd"] for entry in models] == [pytest.approx(per_call)] * 3
    # Three agent turns and the reviewer's one call: the feature's totals (and its budget) count all four.
    assert review["model_review"] == {
        "model": model,
        "input_tokens": wire.usage.input_tokens,
        "output_tokens": wire.usage.output_tokens,
        "cached_input_tokens": wire.usage.cached_input_tokens,
        "cache_write_input_tokens": wire.usage.cache_write_input_tokens,
        "cost_usd": pytest.approx(per_call, abs=1e-6),
    }
    assert feature["input_tokens"] == 4 * wire.usage.input_tokens
    assert feature["output_tokens"] == 4 * wire.usage.output_tokens
    assert feature["cached_input_tokens"] == 4 * wire.usage.cached_input_tokens
    assert feature["cost_usd"] == pytest.approx(4 * per_call, abs=1e-6)  # the API rounds to 6 places


@pytest.mark.parametrize("wire", [ANTHROPIC, OPENAI], ids=lambda wire: wire.kind)
async def test_a_bad_api_key_fails_the_feature_with_authentication_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path, wire: Wire
) -> None:
    with wire.server([wire.respond(calls) for calls in CALLS]) as server:
        env = _env(wire, server, "not-the-key")
        async with running_platform(tmp_path, monkeypatch, scripts, **env) as api:
            await api.post("/api/v1/features", json=feature_request(origin, "badkey"))
            feature = await wait_for(api, "badkey", FINAL)
        remaining = server.remaining
    assert feature["status"] == "failed"
    assert f"{wire.kind}: authentication failed (HTTP 401)" in feature["failure_reason"]
    assert remaining == len(CALLS)  # nothing was answered


@pytest.mark.parametrize("wire", [ANTHROPIC, OPENAI], ids=lambda wire: wire.kind)
async def test_a_high_finding_of_the_model_review_holds_the_feature_for_a_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path, wire: Wire
) -> None:
    layering = {
        "rule_id": "layering",
        "category": "architecture",
        "severity": "high",
        "file": "src/demo_app/greeting.py",
        "line": 1,
        "message": "greet() belongs in the presentation layer",
    }
    answers = AgentAndReviewer(wire, {"findings": [layering], "summary": "misplaced"})
    with wire.server(answers.responses()) as server:
        env = _env(wire, server, server.api_key)
        async with running_platform(tmp_path, monkeypatch, scripts, MAX_RISK_SCORE="50", **env) as api:
            await api.post("/api/v1/features", json=feature_request(origin, "llm2"))
            feature = await wait_for(api, "llm2", FINAL)
            review = (await api.get("/api/v1/features/llm2/review")).json()
        review_requests = [request for request in server.requests if answers.is_review(request)]

    assert feature["status"] == "awaiting_approval", feature["failure_reason"]
    assert review["decision"] == "needs_human"
    assert {
        "rule_id": "llm.layering",
        "category": "architecture",
        "severity": "high",
        "file": "src/demo_app/greeting.py",
        "line": 1,
        "message": "greet() belongs in the presentation layer",
    } in review["findings"]
    assert review["reasons"][0] == f"risk score {review['risk_score']} exceeds MAX_RISK_SCORE=50"
    [review_request] = review_requests
    assert "+def greet(name: str) -> str:" in str(review_request.body["messages"])


HEADER_RULE = "Start every new Python file with the line `# Part of demo-app.`"


@pytest.mark.parametrize("wire", [ANTHROPIC, OPENAI], ids=lambda wire: wire.kind)
async def test_the_repositorys_agents_file_reaches_the_models_first_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, wire: Wire
) -> None:
    agents = f"# Working on demo-app\n\n{HEADER_RULE}\n"
    origin = demo_origin_with(tmp_path, "with-agents", {"AGENTS.md": agents})
    answers = AgentAndReviewer(wire, NO_FINDINGS)
    with wire.server(answers.responses()) as server:
        env = _env(wire, server, server.api_key)
        async with running_platform(tmp_path, monkeypatch, scripts, **env) as api:
            await api.post("/api/v1/features", json=feature_request(origin, "agents1"))
            feature = await wait_for(api, "agents1", FINAL)
            transcript = (await api.get("/api/v1/features/agents1/transcript")).json()["entries"]
        first = server.requests[0]

    assert feature["status"] == "delivered", feature["failure_reason"]
    system = wire.system(first.body)
    assert f"<repository_instructions>\n--- AGENTS.md ---\n# Working on demo-app\n\n{HEADER_RULE}" in system
    assert system.index("<repository_instructions>\n") < system.index("<repository_map>\n")
    [listed] = [entry["content"] for entry in transcript if entry["kind"] == "instructions"]
    assert listed == {"files": ["AGENTS.md"], "truncated": []}


REPRODUCE_EDIT_RERUN = [
    [Call("run_command", {"command": "python -c 'from demo_app.greeting import greet'"})],
    [
        Call("write_file", {"path": "src/demo_app/greeting.py", "content": GREETING}),
        Call("write_file", {"path": "tests/test_greeting.py", "content": GREETING_TEST}),
    ],
    [Call("run_command", {"command": "python -m pytest -q tests/test_greeting.py", "timeout_seconds": 60})],
    [Call("run_command", {"command": "echo 'greet() says hello' > NOTES.md"})],
    [Call("finish", {"summary": "added greet()"})],
]


@pytest.mark.parametrize("wire", [ANTHROPIC, OPENAI], ids=lambda wire: wire.kind)
async def test_an_agent_reproduces_edits_and_reruns_one_test_with_run_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path, wire: Wire
) -> None:
    answers = AgentAndReviewer(wire, NO_FINDINGS, deque(REPRODUCE_EDIT_RERUN))
    with wire.server(answers.responses()) as server:
        env = _env(wire, server, server.api_key)
        async with running_platform(tmp_path, monkeypatch, scripts, **env) as api:
            await api.post("/api/v1/features", json=feature_request(origin, "cmd1"))
            feature = await wait_for(api, "cmd1", FINAL, timeout=180)
            transcript = (await api.get("/api/v1/features/cmd1/transcript")).json()["entries"]
        recorded = list(server.requests)

    assert feature["status"] == "delivered", feature["failure_reason"]
    assert [wire.validate(request.body) for request in recorded] == [None] * len(recorded)
    assert "run_command" in wire.tools(recorded[0].body)
    results = [entry["content"] for entry in transcript if entry["kind"] == "tool"]
    reproduced, rerun, noted = (r["result"] for r in results if r["name"] == "run_command")
    assert reproduced.startswith("exit code 1\n")
    assert "ModuleNotFoundError" in reproduced
    assert rerun.startswith("exit code 0\n")
    assert "1 passed" in rerun
    assert noted.endswith("[changed: NOTES.md]")
    shown = subprocess.run(
        ["git", "--git-dir", str(origin), "show", "feature/cmd1:NOTES.md"], capture_output=True, text=True
    )
    assert shown.stdout == "greet() says hello\n"  # the command's file was delivered with the edits
