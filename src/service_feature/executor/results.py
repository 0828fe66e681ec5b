"""Turning a test runner's output into counts and failing test names. Pure functions.

Structured output is preferred where the runner gives it (pytest's JUnit XML, `go test -json`); the text
summaries are the fallback for a custom `test_command`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from service_feature.models import TestCase, TestOutcome

_MAX_XML_BYTES = 20_000_000


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    cases: list[TestCase] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errored + self.skipped

    @property
    def failures(self) -> list[TestCase]:
        return [case for case in self.cases if case.outcome in (TestOutcome.failed, TestOutcome.errored)]


def parse_junit(xml: bytes) -> Counts | None:
    """Counts from JUnit XML. The file comes from code under test, so it is size-capped and parsed without
    entity expansion (ElementTree does not fetch external entities)."""
    if not xml or len(xml) > _MAX_XML_BYTES or b"<!ENTITY" in xml:
        return None
    try:
        root = ET.fromstring(xml)  # noqa: S314 - entity declarations refused above
    except ET.ParseError:
        return None
    counts = Counts()
    for case in root.iter("testcase"):
        name = "::".join(part for part in (case.get("classname", ""), case.get("name", "")) if part)
        outcome, message = TestOutcome.passed, ""
        for child in case:
            tag = child.tag
            if tag in ("failure", "error", "skipped"):
                outcome = {"failure": TestOutcome.failed, "error": TestOutcome.errored}.get(
                    tag, TestOutcome.skipped
                )
                message = (child.get("message") or child.text or "")[:2000]
                break
        setattr(counts, outcome.value, getattr(counts, outcome.value) + 1)
        counts.cases.append(TestCase(name=name, outcome=outcome, message=message))
    return counts


_PYTEST_PART = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")
_PYTEST_FAILED_LINE = re.compile(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", re.MULTILINE)


def parse_pytest_text(output: str) -> Counts | None:
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|errors?)\b", line)]
    if not summary:
        return None
    counts = Counts()
    for number, word in _PYTEST_PART.findall(summary[-1]):
        if word in ("passed", "xpassed"):
            counts.passed += int(number)
        elif word == "failed":
            counts.failed += int(number)
        elif word.startswith("error"):
            counts.errored += int(number)
        else:
            counts.skipped += int(number)
    for kind, name, message in _PYTEST_FAILED_LINE.findall(output):
        outcome = TestOutcome.failed if kind == "FAILED" else TestOutcome.errored
        counts.cases.append(TestCase(name=name, outcome=outcome, message=message or ""))
    return counts


def parse_go_json(output: str) -> Counts | None:
    counts = Counts()
    seen = False
    logs: dict[str, list[str]] = {}
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or "Action" not in event:
            continue
        seen = True
        test = event.get("Test")
        if not test:
            continue
        name = f"{event.get('Package', '')}.{test}"
        action = event["Action"]
        if action == "output":
            logs.setdefault(name, []).append(str(event.get("Output", "")))
        elif action in ("pass", "fail", "skip"):
            outcome = {"pass": TestOutcome.passed, "fail": TestOutcome.failed, "skip": TestOutcome.skipped}[
                action
            ]
            setattr(counts, outcome.value, getattr(counts, outcome.value) + 1)
            counts.cases.append(
                TestCase(name=name, outcome=outcome, message="".join(logs.get(name, []))[-2000:])
            )
    return counts if seen else None


_CARGO = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
_CARGO_FAILED = re.compile(r"^test (\S+) \.\.\. FAILED$", re.MULTILINE)


def parse_cargo(output: str) -> Counts | None:
    results = _CARGO.findall(output)
    if not results:
        return None
    counts = Counts()
    for passed, failed, ignored in results:
        counts.passed += int(passed)
        counts.failed += int(failed)
        counts.skipped += int(ignored)
    counts.cases = [TestCase(name=name, outcome=TestOutcome.failed) for name in _CARGO_FAILED.findall(output)]
    return counts


_JEST = re.compile(r"Tests:\s+(?:(\d+) failed, )?(?:(\d+) skipped, )?(?:(\d+) passed, )?(\d+) total")
_TAP = re.compile(r"^# (pass|fail|skip)\s+(\d+)$", re.MULTILINE)


def parse_javascript(output: str) -> Counts | None:
    if match := _JEST.search(output):
        failed, skipped, passed, _ = (int(value or 0) for value in match.groups())
        return Counts(passed=passed, failed=failed, skipped=skipped)
    tap = {kind: int(number) for kind, number in _TAP.findall(output)}
    if tap:
        return Counts(passed=tap.get("pass", 0), failed=tap.get("fail", 0), skipped=tap.get("skip", 0))
    return None


def parse_any(output: str) -> Counts | None:
    """For a custom test_command: try each known text format."""
    for parser in (parse_go_json, parse_pytest_text, parse_cargo, parse_javascript):
        counts = parser(output)
        if counts is not None:
            return counts
    return None
