"""Keep the agent's conversation inside the model's context window.

A long session (many files read, many test runs) outgrows any context window; sending it anyway is a 400 from
the provider and a failed feature. Before every model call the agent asks `ContextWindow.fit` for a history
that fits, and keeps what it returns as its history from then on.

Token estimate: characters / 4 — no tokenizer is needed, it is provider-neutral and cheap, and it is
calibrated after every call: the provider reports the prompt's real input tokens, and the ratio real/estimated
(never below 1) scales later estimates. So code that tokenizes denser than 4 characters per token does not
slip past the limit for more than one turn.

Condensation policy, in order, each step only as far as needed:

1. old turns (all but the latest `keep_recent`): each tool result becomes a one-line stub
   "[result of read_file(path=src/a.py) elided: 120 lines]" and long arguments of the turn's tool calls
   (a whole file given to write_file) become "[elided: N lines]"; oldest turn first;
2. old turns are dropped whole, oldest first — an assistant turn together with every result that answers it,
   so tool_use/tool_result pairing stays valid (the Messages API rejects an unanswered call or an orphan
   result) — and a note after the first message says how many were dropped;
3. the same two steps on the recent turns except the last, and last of all the last turn's tool results are
   cut in the middle.

The first user message (the task) is always kept. Steps 1 and 2 condense down to a low-water mark below the
limit (hysteresis; step 2 only when the recent turns leave room for it): every condensation changes the
history and so invalidates the provider's cached prefix from that point on, and condensing a little every
turn would miss the cache every turn. The stable prefix
(system prompt and tools) is never touched. If even the task alone does not fit, `ContextOverflow`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from service_feature.llm.base import (
    AssistantMessage,
    Message,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    UserMessage,
)

CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4  # role and id markers around each message
_LONG_ARGUMENT = 200  # characters; longer tool-call arguments of old turns are elided
_SHOWN_ARGUMENT = 60  # characters; shorter argument values appear in a stub
_STUB_PREFIX = "[result of "
_NOTE_PREFIX = "[context note: "


class ContextOverflow(Exception):
    """Even the condensed conversation does not fit; the message is the feature's failure reason."""


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def message_tokens(message: Message) -> int:
    if isinstance(message, AssistantMessage):
        calls = sum(len(call.name) + json_length(call.arguments) for call in message.tool_calls)
        return math.ceil((len(message.text) + calls) / CHARS_PER_TOKEN) + _MESSAGE_OVERHEAD
    return estimate_tokens(message.content) + _MESSAGE_OVERHEAD


def json_length(value: Any) -> int:
    """About the length of `value` as JSON, without building the JSON: `fit` measures every message many
    times, and encoding a long argument each time would hold the event loop."""
    if isinstance(value, str):
        escaped = value.count('"') + value.count("\\") + value.count("\n")
        return len(value) + escaped + 2
    if isinstance(value, dict):
        return 2 + sum(json_length(key) + json_length(item) + 2 for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return 2 + sum(json_length(item) + 1 for item in value)
    return len(str(value))


def prefix_tokens(system: str, tools: Sequence[ToolSpec]) -> int:
    """The stable prefix of every request: the system prompt and the tool definitions."""
    specs = json.dumps([[tool.name, tool.description, tool.parameters] for tool in tools])
    return estimate_tokens(system) + estimate_tokens(specs)


# A turn: an assistant message and what follows it up to the next one (its tool results, a nudge).
_Turn = list[Message]


@dataclass
class ContextWindow:
    """How many tokens one request may carry, and how to make the history fit them."""

    limit: int  # tokens of a whole request: the model's context window minus room for its answer
    prefix: int  # tokens of the stable prefix (`prefix_tokens`)
    keep_recent: int = 4  # latest turns kept intact while older ones can be condensed
    low_water: float = 0.6  # condense old turns down to this share of the limit
    scale: float = 1.0  # real tokens per estimated token, from the provider's reports
    dropped: int = 0  # turns dropped so far, for the note

    def estimate(self, messages: Sequence[Message]) -> int:
        """Tokens of a request carrying `messages` after the prefix."""
        return math.ceil((self.prefix + sum(map(message_tokens, messages))) * self.scale)

    def calibrate(self, messages: Sequence[Message], reported_input_tokens: int) -> None:
        """Learn from the provider's count for the request that carried `messages` (0: not reported)."""
        estimated = self.prefix + sum(map(message_tokens, messages))
        if reported_input_tokens > 0 and estimated > 0:
            self.scale = max(1.0, reported_input_tokens / estimated)

    def fit(self, messages: list[Message]) -> list[Message]:
        """`messages` unchanged if they fit, else condensed (see the module docstring)."""
        if self.estimate(messages) <= self.limit:
            return messages
        head, turns = _split(messages)
        old_count = min(max(len(turns) - self.keep_recent, 0), max(len(turns) - 1, 0))
        old, recent, last = turns[:old_count], turns[old_count:-1], turns[-1:]

        def size() -> int:
            return self._size(head, old + recent + last)

        low = int(self.limit * self.low_water)
        # Dropping old turns down to the low-water mark only helps when the recent turns leave room for it.
        drop_old_to = low if self._size(head, recent + last) <= low else self.limit
        for stub_to, drop_to, pool in ((low, drop_old_to, old), (self.limit, self.limit, recent)):
            for index in range(len(pool)):
                if size() <= stub_to:
                    break
                pool[index] = _condense_turn(pool[index])
            while pool and size() > drop_to:
                del pool[0]
                self.dropped += 1
        turns = old + recent + last
        if turns and self._size(head, turns) > self.limit:
            turns[-1] = self._cut_results(turns[-1], self.limit - self._size(head, turns[:-1]))
        condensed = self._join(head, turns)
        if self.estimate(condensed) > self.limit:
            raise ContextOverflow(
                f"context window exceeded: {self.estimate(condensed):,} estimated tokens after condensing "
                f"the history, over the limit of {self.limit:,} (LLM_CONTEXT_TOKENS minus the answer)"
            )
        return condensed

    def _size(self, head: list[Message], turns: Sequence[_Turn]) -> int:
        return self.estimate(self._join(head, turns))

    def _join(self, head: list[Message], turns: Sequence[_Turn]) -> list[Message]:
        note = (
            [
                UserMessage(
                    f"{_NOTE_PREFIX}{self.dropped} earlier turn(s) were dropped to fit the context window]"
                )
            ]
            if self.dropped
            else []
        )
        return head + note + [message for turn in turns for message in turn]

    def _cut_results(self, turn: _Turn, room: int) -> _Turn:
        """Cut the middle out of the turn's tool results so that the turn takes at most `room` tokens."""
        results = [m for m in turn if isinstance(m, ToolResultMessage)]
        fixed = sum(message_tokens(m) for m in turn if not isinstance(m, ToolResultMessage))
        share = (room / self.scale - fixed) / max(len(results), 1) - _MESSAGE_OVERHEAD - 20
        keep = max(int(share * CHARS_PER_TOKEN), 0)
        return [
            replace(m, content=_cut_middle(m.content, keep)) if isinstance(m, ToolResultMessage) else m
            for m in turn
        ]


def _split(messages: list[Message]) -> tuple[list[Message], list[_Turn]]:
    """The messages before the first assistant turn (without an old note), and the turns."""
    head: list[Message] = []
    turns: list[_Turn] = []
    for message in messages:
        if isinstance(message, AssistantMessage):
            turns.append([message])
        elif turns:
            turns[-1].append(message)
        elif not (isinstance(message, UserMessage) and message.content.startswith(_NOTE_PREFIX)):
            head.append(message)
    return head, turns


def _condense_turn(turn: _Turn) -> _Turn:
    first = turn[0]
    calls = {call.id: call for call in first.tool_calls} if isinstance(first, AssistantMessage) else {}
    condensed: _Turn = []
    for message in turn:
        if isinstance(message, AssistantMessage):
            message = replace(message, tool_calls=tuple(map(_shorten_call, message.tool_calls)))
        elif isinstance(message, ToolResultMessage) and not message.content.startswith(_STUB_PREFIX):
            call = calls.get(message.tool_call_id)
            lines = message.content.count("\n") + 1
            described = _describe(call) if call else f"{message.name}()"
            message = replace(message, content=f"{_STUB_PREFIX}{described} elided: {lines} lines]")
        condensed.append(message)
    return condensed


def _shorten_call(call: ToolCall) -> ToolCall:
    arguments = {
        key: f"[elided: {value.count(chr(10)) + 1} lines]"
        if isinstance(value, str) and len(value) > _LONG_ARGUMENT
        else value
        for key, value in call.arguments.items()
    }
    return replace(call, arguments=arguments)


def _describe(call: ToolCall) -> str:
    shown = ", ".join(
        f"{key}={value}"
        for key, value in call.arguments.items()
        if isinstance(value, (str, int)) and len(str(value)) <= _SHOWN_ARGUMENT and "\n" not in str(value)
    )
    return f"{call.name}({shown})"


def _cut_middle(text: str, keep: int) -> str:
    if len(text) <= keep:
        return text
    half = keep // 2
    return f"{text[:half]}\n[… {len(text) - 2 * half} characters elided …]\n{text[len(text) - half :]}"
