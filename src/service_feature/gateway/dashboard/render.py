"""What the feature page shows, shaped for the templates: the diff highlighted per file, the test table,
the review's findings and the transcript's turns. Text from a repository or a model reaches the page only
through Jinja's autoescaping or Pygments' HTML formatter, which escapes it too."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

# Pygments ships no type information (types-Pygments is not a dependency).
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from service_feature.lifecycle import FeatureStatus

MAX_DIFF_CHARS = 400_000  # beyond this the page links to the raw patch instead of highlighting it
_FORMATTER = HtmlFormatter(cssclass="highlight", nowrap=False)
_FILE_HEADER = re.compile(r"^diff --git a/(?P<a>.*) b/(?P<b>.*)$")
_NEW_NAME = re.compile(r"^\+\+\+ (?:b/)?(?P<name>.*)$")

# The baseline classification of models.TestResult, as the table labels it, most telling first.
CLASSIFICATION_LABELS = {
    "broken": "broken",
    "new_failing": "new (failing)",
    "still_failing": "still failing",
    "fixed": "fixed",
    "new_passing": "new (passing)",
    "removed": "removed",
    "still_passing": "still passing",
}


def pygments_css() -> str:
    return str(_FORMATTER.get_style_defs(".highlight"))  # type: ignore[no-untyped-call] # untyped in the stubs


@dataclass
class DiffFile:
    name: str
    html: Markup
    added: int
    removed: int


def split_diff(diff: str) -> list[tuple[str, str]]:
    """The diff as (file name, its part of the diff), in order."""
    parts: list[tuple[str, list[str]]] = []
    for line in diff.splitlines(keepends=True):
        header = _FILE_HEADER.match(line.rstrip("\n"))
        if header or not parts:
            parts.append((header.group("b") if header else "", []))
        parts[-1][1].append(line)
    named: list[tuple[str, str]] = []
    for name, lines in parts:
        if not name:
            name = next((m.group("name") for line in lines if (m := _NEW_NAME.match(line.rstrip("\n")))), "")
        named.append((name or "(diff)", "".join(lines)))
    return named


def diff_files(diff: str) -> list[DiffFile]:
    files = []
    for name, text in split_diff(diff):
        lines = text.splitlines()
        added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
        html = Markup(highlight(text, DiffLexer(), _FORMATTER))  # noqa: S704 - Pygments escapes its input
        files.append(DiffFile(name=name, html=html, added=added, removed=removed))
    return files


@dataclass
class RunRow:
    name: str
    classification: str
    outcome: str
    message: str = ""


@dataclass
class RunTable:
    summary: dict[str, Any]
    rows: list[RunRow]
    still_passing: list[str]
    has_baseline: bool
    output_tail: str
    untestable: str | None


def run_table(result: dict[str, Any]) -> RunTable:
    """Every named test the run classified against the baseline (without one: its failures), worst
    first; tests that passed before and after are listed apart, there are usually many."""
    messages = {f.get("name", ""): f for f in result.get("failures", [])}
    classification: dict[str, list[str]] = result.get("classification") or {}
    rows: list[RunRow] = []
    for key, label in CLASSIFICATION_LABELS.items():
        if key == "still_passing":
            continue
        for name in classification.get(key, []):
            failure = messages.get(name, {})
            rows.append(RunRow(name, label, str(failure.get("outcome", "")), str(failure.get("message", ""))))
    if not classification:
        rows = [
            RunRow(str(f.get("name", "")), "", str(f.get("outcome", "")), str(f.get("message", "")))
            for f in result.get("failures", [])
        ]
    counts = {k: result.get(k) for k in ("passed", "failed", "errored", "skipped", "exit_code", "command")}
    counts["duration_seconds"] = round(float(result.get("duration_seconds") or 0.0), 2)
    counts["timed_out"] = bool(result.get("timed_out"))
    return RunTable(
        summary=counts,
        rows=rows,
        still_passing=list(classification.get("still_passing", [])),
        has_baseline=result.get("baseline") is not None,
        output_tail=str(result.get("output_tail") or ""),
        untestable=result.get("untestable"),
    )


@dataclass
class TranscriptItem:
    attempt: int
    kind: str
    title: str
    text: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)
    result: str = ""
    is_error: bool = False
    tokens: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def transcript_item(attempt: int, kind: str, content: dict[str, Any], turn: int) -> TranscriptItem:
    if kind == "model":
        calls = [
            (str(c.get("name", "")), pretty(c.get("arguments", {}))) for c in content.get("tool_calls", [])
        ]
        usage = {k: int(v) for k, v in (content.get("usage") or {}).items() if isinstance(v, int)}
        return TranscriptItem(
            attempt,
            kind,
            f"Turn {turn} · {content.get('model') or 'model'}",
            text=str(content.get("text") or ""),
            calls=calls,
            tokens=usage,
            cost_usd=float(content.get("cost_usd") or 0.0),
        )
    if kind == "tool":
        return TranscriptItem(
            attempt,
            kind,
            f"Tool {content.get('name', '')}",
            calls=[(str(content.get("name", "")), pretty(content.get("arguments", {})))],
            result=str(content.get("result", "")),
            is_error=bool(content.get("is_error")),
        )
    if kind == "task":
        return TranscriptItem(attempt, kind, "Task", text=str(content.get("text", "")))
    return TranscriptItem(attempt, kind, kind.replace("_", " ").capitalize(), text=pretty(content))


def transcript_items(entries: list[tuple[int, str, dict[str, Any]]]) -> list[TranscriptItem]:
    """Each entry ready to show, the model's turns numbered within their attempt."""
    items, turns = [], dict[int, int]()
    for attempt, kind, content in entries:
        if kind == "model":
            turns[attempt] = turns.get(attempt, 0) + 1
        items.append(transcript_item(attempt, kind, content, turns.get(attempt, 0)))
    return items


def safe_link(url: str | None) -> str | None:
    """A URL fit for an href: http(s) only, so a stored `javascript:` URL never becomes a link."""
    if url and re.match(r"^https?://", url, re.IGNORECASE):
        return url
    return None


def is_status_event(event_type: str) -> bool:
    return event_type.startswith("status.") or event_type == "feature.accepted"


def can_cancel(status: str) -> bool:
    return not FeatureStatus(status).is_terminal
