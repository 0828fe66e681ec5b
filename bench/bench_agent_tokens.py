"""Input tokens a feature costs, with and without prompt caching and history condensation, as ratios.

A fixed task over a fixed generated repository: the real agent loop (`run_agent`, real tools, real repository
map, real condensation) talks to a scripted model that reads N files one turn at a time, edits one, and
finishes. Every request is measured as the Anthropic provider would send it:

- tokens: characters / 4 of the request's tools, system prompt and messages (the agent's own estimate);
- cached tokens: the longest prefix shared with the previous request (tools, then system, then messages:
  the order in which the Messages API caches), as a provider cache with a breakpoint on the last block reads
  it; the rest of the request is written to the cache;
- billed input, in USD at the model's list prices (`pricing.py`): uncached at the input price, cache reads
  at the cached price, cache writes at 1.25x the input price (Anthropic's 5-minute cache) when caching is on.

Caching on/off is the same conversation billed two ways; condensation on/off is two conversations
(LLM_CONTEXT_TOKENS = --context-tokens, or no limit).

    .venv/bin/python bench/bench_agent_tokens.py [--reads 30] [--context-tokens 16000] [--model M]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service_feature.llm import anthropic
from service_feature.llm.base import Message, ModelTurn, ToolCall, ToolSpec, Usage
from service_feature.llm.pricing import cost_usd, price_for
from service_feature.models import TestResult
from service_feature.worker.agent import Budget, run_agent
from service_feature.worker.context import estimate_tokens
from service_feature.worker.repomap import build_repo_map
from service_feature.worker.tools import Toolbox


def make_repository(root: Path, modules: int) -> None:
    """`modules` Python files of ~120 lines each, deterministic."""
    for index in range(modules):
        body = [f'"""Module {index}: helpers for part {index} of the system."""', ""]
        for function in range(12):
            body += [
                "",
                f"def compute_{index}_{function}(value: int, factor: int = {function + 1}) -> int:",
                f'    """Scale value by factor and offset it by {index}."""',
                f"    result = value * factor + {index}",
                "    if result > 1000:",
                "        result -= 1000",
                "    return result",
                "",
            ]
        path = root / "src" / "app" / f"module_{index:02}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(body) + "\n")
    (root / "README.md").write_text("# app\n\nA fixed repository for the token benchmark.\n")


def script(reads: int) -> list[list[ToolCall]]:
    turns = [[ToolCall(f"read{n}", "read_file", {"path": f"src/app/module_{n:02}.py"})] for n in range(reads)]
    edit = {"path": "src/app/module_00.py", "old_str": "return result", "new_str": "return int(result)"}
    turns.append(
        [ToolCall("edit", "edit_file", {**edit, "old_str": "    return result\n\n\ndef compute_0_1"})]
    )
    turns.append([ToolCall("done", "finish", {"summary": "done"})])
    return turns


@dataclass
class MeasuringProvider:
    """Answers from the script; measures each request as the Anthropic provider would send it."""

    turns: list[list[ToolCall]]
    model: str
    name: str = "bench"
    requests: list[tuple[int, int]] = field(default_factory=list)  # (tokens, cached tokens)
    condensations: int = 0
    _previous: str = ""

    async def complete(self, system: str, messages: list[Message], tools: list[ToolSpec]) -> ModelTurn:
        body = anthropic.build_request(self.model, 1024, system, messages, tools)
        text = _cache_order(body)
        shared = len(os.path.commonprefix([text, self._previous]))  # noqa: RUF071 - characters wanted
        self._previous = text
        tokens, cached = estimate_tokens(text), shared // 4
        self.requests.append((tokens, cached))
        calls = self.turns.pop(0)
        return ModelTurn(
            text="",
            tool_calls=calls,
            usage=Usage(input_tokens=tokens, output_tokens=20),
            stop_reason="tool_use",
            model=self.model,
        )


def _cache_order(body: dict[str, Any]) -> str:
    """Tools, system, messages — without the cache_control markers, which move and do not key the cache."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "cache_control"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return "".join(json.dumps(strip(body[key])) for key in ("tools", "system", "messages"))


async def _passing() -> TestResult:
    return TestResult(command="true", sandbox="bench", exit_code=0, passed=1)


async def conversation(root: Path, reads: int, model: str, context_tokens: int | None) -> MeasuringProvider:
    provider = MeasuringProvider(script(reads), model)
    repo_map = build_repo_map(root, ["src/app/module_00.py"], 2_000)

    def record(kind: str, content: dict[str, Any]) -> None:
        provider.condensations += kind == "context"

    await run_agent(
        provider,
        Toolbox(root, _passing),
        "<feature_request>\nMake module 0 return ints\n</feature_request>",
        max_turns=reads + 5,
        record=record,
        repo_map=repo_map,
        budget=Budget(context_tokens=context_tokens),
    )
    return provider


def billed_usd(requests: list[tuple[int, int]], model: str, caching: bool) -> float:
    """Input only; with caching, whatever was not read from the cache is written to it."""
    if price_for(model) is None:
        raise SystemExit(f"no price for {model}")
    usages = [
        Usage(input_tokens=tokens, cached_input_tokens=cached, cache_write_input_tokens=tokens - cached)
        if caching
        else Usage(input_tokens=tokens)
        for tokens, cached in requests
    ]
    return sum(cost_usd(model, usage) for usage in usages)


async def main(reads: int, context_tokens: int, model: str) -> None:
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as directory:
        root = Path(directory)
        make_repository(root, max(reads, 40))
        full = await conversation(root, reads, model, None)
        condensed = await conversation(root, reads, model, context_tokens)
    baseline = billed_usd(full.requests, model, caching=False)
    print(f"{reads} file reads + edit + finish = {len(full.requests)} model calls; {model}; chars/4 tokens")
    print(f"condensation: LLM_CONTEXT_TOKENS={context_tokens:,} vs unlimited\n")
    print(f"{'':<34}{'input tokens':>14}{'of which cached':>17}{'billed USD':>12}{'ratio':>8}")
    for label, provider in (("no condensation", full), ("condensation", condensed)):
        sent = sum(tokens for tokens, _ in provider.requests)
        cached = sum(hit for _, hit in provider.requests)
        largest = max(tokens for tokens, _ in provider.requests)
        for caching in (False, True):
            usd = billed_usd(provider.requests, model, caching)
            name = f"{label}, {'caching' if caching else 'no caching'}"
            shown = cached if caching else 0
            print(f"{name:<34}{sent:>14,}{shown:>17,}{usd:>12.4f}{usd / baseline:>7.2f}x")
        print(f"{'':<34}largest request: {largest:,} tokens; condensed {provider.condensations} times")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=30)
    parser.add_argument("--context-tokens", type=int, default=16_000)
    parser.add_argument("--model", default="claude-sonnet-5-5")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.reads, arguments.context_tokens, arguments.model))
