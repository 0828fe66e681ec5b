"""Turning a test runner's output into counts and per-test outcomes. Pure functions.

Structured output is preferred where the runner gives it (pytest's JUnit XML, `go test -json`); cargo's
`test NAME ... ok` lines and TAP (`node --test`) also name every test, passing ones included, which the
baseline comparison needs. The text summaries (pytest, jest) are the fallback for a custom `test_command`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from service_feature.models import TestCase, TestOutcome

_MAX_XML_BYTES = 20_000_000
_MESSAGE_CHARS = 2000


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

    @property
    def unattributed(self) -> int:
        """Failures no test name can be given for (a crash, a build or collection error, a bare summary)."""
        return max(0, self.failed + self.errored - len(self.failures))

    def add(self, case: TestCase) -> None:
        """Count one named test."""
        setattr(self, case.outcome.value, getattr(self, case.outcome.value) + 1)
        self.cases.append(case)


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
                message = (child.get("message") or child.text or "")[:_MESSAGE_CHARS]
                break
        counts.add(TestCase(name=name, outcome=outcome, message=message))
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
            counts.add(
                TestCase(name=name, outcome=outcome, message="".join(logs.get(name, []))[-_MESSAGE_CHARS:])
            )
    return counts if seen else None


_CARGO = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
_CARGO_BINARY = re.compile(
    r"^\s*(?:Running (?:unittests )?(\S+)(?: \(([^)]*)\))?|Doc-tests (\S+))", re.MULTILINE
)
_CARGO_TEST = re.compile(r"^test (.+?) \.\.\. (ok|FAILED|ignored)", re.MULTILINE)
_CARGO_STDOUT = re.compile(r"^---- (.+?) stdout ----$", re.MULTILINE)
_CARGO_OUTCOMES = {"ok": TestOutcome.passed, "FAILED": TestOutcome.failed, "ignored": TestOutcome.skipped}


def parse_cargo(output: str) -> Counts | None:
    """Totals from every `test result:` line; each `test NAME ... ok|FAILED|ignored` line becomes a case,
    named after its test binary's source (`tests/api.rs::it_works`) when cargo printed one, so equal test
    names in two binaries stay apart. In a workspace two members' binaries can have the same source
    (`src/lib.rs`): those are told apart by crate (`src/lib.rs (member_a)`), and if that is not enough
    (`tests/api.rs` in two members) by the binary cargo built, hash included. A
    failure's message is its `---- NAME stdout ----` section in the same binary's output."""
    results = _CARGO.findall(output)
    if not results:
        return None
    counts = Counts()
    for passed, failed, ignored in results:
        counts.passed += int(passed)
        counts.failed += int(failed)
        counts.skipped += int(ignored)
    for binary, segment in _cargo_segments(output):
        messages = _cargo_messages(segment)
        for match in _CARGO_TEST.finditer(segment):
            name = match.group(1)
            outcome = _CARGO_OUTCOMES[match.group(2)]
            message = messages.get(name, "") if outcome is TestOutcome.failed else ""
            counts.cases.append(
                TestCase(name=f"{binary}::{name}" if binary else name, outcome=outcome, message=message)
            )
    return counts


def _cargo_segments(output: str) -> list[tuple[str, str]]:
    """The output split per test binary, each with its name ("" for what comes before the first)."""
    found = list(_CARGO_BINARY.finditer(output))
    sources = [m.group(1) or f"doc-tests {m.group(3)}" for m in found]
    binaries = [PurePosixPath(m.group(2) or "").name for m in found]  # `beta-ea50cc990a7965da`
    # Told apart by the crate (the binary's name without cargo's hash), else by the whole binary name.
    names = sources
    for qualifier in ([b.rpartition("-")[0] or b for b in binaries], binaries):
        if len(set(names)) == len(names):
            break
        names = [
            f"{source} ({extra})" if sources.count(source) > 1 and extra else source
            for source, extra in zip(sources, qualifier, strict=True)
        ]
    starts = [m.start() for m in found]
    segments = [("", output[: starts[0] if starts else None])]
    for index, name in enumerate(names):
        end = starts[index + 1] if index + 1 < len(starts) else None
        segments.append((name, output[starts[index] : end]))
    return segments


def _cargo_messages(output: str) -> dict[str, str]:
    sections = list(_CARGO_STDOUT.finditer(output))
    messages = {}
    for index, section in enumerate(sections):
        end = (
            sections[index + 1].start()
            if index + 1 < len(sections)
            else output.find("\nfailures:", section.end())
        )
        text = output[section.end() : end if end > 0 else None]
        messages[section.group(1)] = text.strip()[:_MESSAGE_CHARS]
    return messages


_JEST = re.compile(r"Tests:\s+(?:(\d+) failed, )?(?:(\d+) skipped, )?(?:(\d+) passed, )?(\d+) total")
_JEST_FAILURE = re.compile(r"^\s*● (.+)$", re.MULTILINE)
_TAP_SUMMARY = re.compile(r"^# (pass|fail|skip|skipped|todo|cancelled)\s+(\d+)$", re.MULTILINE)
_TAP_SUBTEST = re.compile(r"^(\s*)# Subtest: (.*)$")
_TAP_RESULT = re.compile(r"^(\s*)(not ok|ok) \d+(?: - ([^#]*?))?\s*(?:# (SKIP|TODO)\b.*)?$", re.IGNORECASE)
_TAP_INDENT = 4  # node --test indents a subtest's lines by four spaces per level


def parse_javascript(output: str) -> Counts | None:
    """jest's summary (failing test names from its `●` headings), else TAP as `node --test` prints it."""
    if match := _JEST.search(output):
        failed, skipped, passed, _ = (int(value or 0) for value in match.groups())
        counts = Counts(passed=passed, failed=failed, skipped=skipped)
        counts.cases = [
            TestCase(name=name.strip(), outcome=TestOutcome.failed)
            for name in dict.fromkeys(_JEST_FAILURE.findall(output))
        ]
        return counts
    return parse_tap(output)


def parse_tap(output: str) -> Counts | None:
    """TAP: one case per `ok`/`not ok` line, subtests named `parent > child`, a failure's message from its
    YAML block's `error:`. Counts come from the `# pass/# fail/# skipped` trailer when there is one (node
    counts a parent whose subtest failed as failed too, and so do the cases here), else from the cases."""
    lines = output.splitlines()
    cases: list[TestCase] = []
    parents: list[str] = []
    for index, line in enumerate(lines):
        if subtest := _TAP_SUBTEST.match(line):
            depth = len(subtest.group(1)) // _TAP_INDENT
            parents[depth:] = [subtest.group(2).strip()]
            continue
        result = _TAP_RESULT.match(line)
        if not result:
            continue
        depth = len(result.group(1)) // _TAP_INDENT
        name = " > ".join([*parents[:depth], (result.group(3) or "").strip() or f"test {len(cases) + 1}"])
        if result.group(4):
            outcome = TestOutcome.skipped
        elif result.group(2).lower() == "ok":
            outcome = TestOutcome.passed
        else:
            outcome = TestOutcome.failed
        message = _tap_error(lines, index + 1) if outcome is TestOutcome.failed else ""
        cases.append(TestCase(name=name, outcome=outcome, message=message))
    summary = {kind: int(number) for kind, number in _TAP_SUMMARY.findall(output)}
    if not cases and not summary:
        return None
    counts = Counts()
    for case in cases:
        counts.add(case)
    if summary:
        counts.passed = summary.get("pass", 0)
        counts.failed = summary.get("fail", 0)
        counts.errored = summary.get("cancelled", 0)
        counts.skipped = summary.get("skip", 0) + summary.get("skipped", 0) + summary.get("todo", 0)
    return counts


def _tap_error(lines: list[str], start: int) -> str:
    """The `error:` of the YAML block that follows a `not ok` line (a quoted scalar or a `|-` block)."""
    if start >= len(lines) or lines[start].strip() != "---":
        return ""
    for index in range(start + 1, len(lines)):
        stripped = lines[index].strip()
        if stripped == "...":
            break
        if stripped.startswith("error:"):
            value = stripped[len("error:") :].strip()
            if value not in ("|-", "|", ">-", ">"):
                return value.strip("'\"")[:_MESSAGE_CHARS]
            indent = len(lines[index]) - len(lines[index].lstrip())
            block = []
            for following in lines[index + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            return "\n".join(block).strip()[:_MESSAGE_CHARS]
    return ""


def parse_any(output: str) -> Counts | None:
    """For a custom test_command: try each known text format."""
    for parser in (parse_go_json, parse_pytest_text, parse_cargo, parse_javascript):
        counts = parser(output)
        if counts is not None:
            return counts
    return None
