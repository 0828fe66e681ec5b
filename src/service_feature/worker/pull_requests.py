"""What a pull request says: pure functions from a delivered feature to the title, body and labels the
forge shows. A reviewer reads the change there, so the body carries everything the platform knows about
it: the specification, the agent's summary, the tests against the base commit, the review and the cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service_feature.models import FeatureRequest, TestResult

_FINDINGS_SHOWN = 30
_TESTS_SHOWN = 20
# The risk label's bands, on the reviewer's 0-100 score.
_RISK_BANDS = ((25, "low"), (50, "medium"), (75, "high"))
PLATFORM_LABEL = "service-feature"


@dataclass(frozen=True)
class PullRequestFacts:
    """Everything the pull request reports about one delivered (or held) feature."""

    request: FeatureRequest
    summary: str
    tests: TestResult | None
    review: dict[str, Any] | None
    cost_usd: float
    tokens: int
    models: tuple[str, ...]
    transcript_url: str | None
    held: bool


def pull_request_title(request: FeatureRequest) -> str:
    return request.specification.title


def risk_level(score: int) -> str:
    for bound, level in _RISK_BANDS:
        if score < bound:
            return level
    return "critical"


def pull_request_labels(review: dict[str, Any] | None) -> tuple[str, ...]:
    """The platform's label, and the risk level when there was a review (`risk:low` … `risk:critical`)."""
    if review is None:
        return (PLATFORM_LABEL,)
    return (PLATFORM_LABEL, f"risk:{risk_level(int(review.get('risk_score', 0)))}")


def pull_request_body(facts: PullRequestFacts) -> str:
    sections = [
        _held_notice(facts) if facts.held else "",
        _specification(facts.request),
        _agent(facts),
        _tests(facts.tests),
        _review(facts.review),
        _cost(facts),
        f"<sub>Execution-Id: `{facts.request.execution_id}`</sub>",
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def reply_body(summary: str, commit: str) -> str:
    """The answer to a review comment: the commit that addresses it and what the agent did."""
    did = _quote(summary) if summary else "> (the agent left no summary)"
    return f"Pushed {commit[:12]} for this comment.\n\n{did}\n"


def _held_notice(facts: PullRequestFacts) -> str:
    return (
        "> [!IMPORTANT]\n> The reviewer held this change for a person. It stays a draft until someone "
        f"approves it on the platform (`service-feature approve {facts.request.execution_id}`) or rejects it."
    )


def _specification(request: FeatureRequest) -> str:
    spec = request.specification
    lines = ["## Specification"]
    if spec.description:
        lines += ["", _quote(spec.description)]
    if spec.requirements:
        lines += ["", "**Requirements**", *(f"- {item}" for item in spec.requirements)]
    if spec.target_files:
        lines += ["", "**Target files**: " + ", ".join(f"`{path}`" for path in spec.target_files)]
    return "\n".join(lines)


def _agent(facts: PullRequestFacts) -> str:
    if not facts.summary:
        return ""
    return "## What the agent did\n\n" + _quote(facts.summary)


def _tests(tests: TestResult | None) -> str:
    if tests is None:
        return "## Tests\n\nNo test run is on record."
    verdict = "passed" if tests.succeeded else "did not pass"
    lines = [
        "## Tests",
        "",
        f"`{_inline(tests.command)}` {verdict}: {tests.passed} passed, {tests.failed} failed, "
        f"{tests.errored} errors, {tests.skipped} skipped ({tests.duration_seconds:.1f} s, {tests.sandbox}).",
    ]
    if tests.baseline is not None:
        lines += ["", "Against the base commit:", "", "| | tests |", "| --- | --- |"]
        for key, label in (
            ("fixed", "fixed"),
            ("broken", "broken"),
            ("still_failing", "still failing (failed before the change too)"),
            ("new_passing", "new, passing"),
            ("new_failing", "new, failing"),
            ("removed", "removed"),
        ):
            names = tests.classification.get(key, [])
            if names:
                lines.append(f"| {label} | {_names(names)} |")
        still_passing = len(tests.classification.get("still_passing", []))
        lines.append(f"| still passing | {still_passing} |")
    return "\n".join(lines)


def _review(review: dict[str, Any] | None) -> str:
    if review is None:
        return ""
    score = int(review.get("risk_score", 0))
    lines = [
        "## Review",
        "",
        f"Decision: **{review.get('decision')}**, risk score {score}/100 ({risk_level(score)}).",
    ]
    lines += [f"- {_inline(reason)}" for reason in review.get("reasons", [])]
    findings: list[dict[str, Any]] = review.get("findings", [])
    if findings:
        lines += ["", "| severity | rule | where | finding |", "| --- | --- | --- | --- |"]
        for finding in findings[:_FINDINGS_SHOWN]:
            where = finding.get("file") or ""
            if where and finding.get("line"):
                where = f"{where}:{finding['line']}"
            lines.append(
                f"| {finding['severity']} | `{_cell(finding['rule_id'])}` | {_cell(where)} "
                f"| {_cell(finding['message'])} |"
            )
        if len(findings) > _FINDINGS_SHOWN:
            lines.append(f"\n… and {len(findings) - _FINDINGS_SHOWN} more findings on the platform.")
    return "\n".join(lines)


def _cost(facts: PullRequestFacts) -> str:
    models = ", ".join(f"`{model}`" for model in facts.models) or "none"
    line = f"Model: {models} · {facts.tokens:,} tokens · ${facts.cost_usd:.4f}"
    if facts.transcript_url:
        line += f" · [transcript]({facts.transcript_url})"
    return "## Cost\n\n" + line


def _names(names: list[str]) -> str:
    shown = ", ".join(f"`{_cell(name)}`" for name in names[:_TESTS_SHOWN])
    more = f" and {len(names) - _TESTS_SHOWN} more" if len(names) > _TESTS_SHOWN else ""
    return shown + more


def _quote(text: str) -> str:
    """Requester and model text as a block quote: its markdown stays readable and cannot end the section."""
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _inline(text: str) -> str:
    return " ".join(text.split()).replace("`", "'")


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: one line, no column break."""
    return _inline(text).replace("|", "\\|")
