"""Secrets in the lines a patch adds: detect-secrets' detectors plus formats it does not know.

detect-secrets' file and diff scanners depend on the process's working directory and global settings (files
outside the cwd silently gave no results), so its plugins are called directly on each added line instead: no
chdir, no shared state, and no verification requests (its `verify` calls only run when a verification policy
is configured, which this module never does). Its heuristic filters are applied to the heuristic detectors.

Severity: a known credential format (AWS, private key, GitHub, Slack, Stripe, ...) is critical; an
entropy-only or keyword-only hit is high, because it may be a fixture or a digest. Heuristic detectors skip
test files and lock files, where random-looking strings are normal. Inline allowlist pragmas are ignored: the
patch's author is the agent under review.

A credential split into adjacent string literals (`"ghp_" + "…"`) is found: known formats are also
matched on the line with such literals joined. AWS's documented example credentials (`…EXAMPLE`,
`…EXAMPLEKEY`) are not reported. A secret is not
blamed on the patch when the base already had it: when its text appears in a removed or
context line of the diff (a moved or re-indented line) or in the base version of the file (`base_tree`). A
private key is recognised by its header line, which is the same for every key: when the patch also adds the
line below the header, that first line of key material must be in the base too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.plugins.base import BasePlugin

from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.diff import FileChange
from service_feature.reviewer.scanners.paths import is_test_path

_HEURISTIC_TYPES = frozenset({"Base64 High Entropy String", "Hex High Entropy String", "Secret Keyword"})
_IGNORED_TYPES = frozenset({"Public IP (ipv4)"})  # an address is not a credential
_TOKEN_CHARS = re.compile(r"[\w\-+/=.~]")
# The credentials AWS prints in its documentation (`AKIAIOSFODNN7EXAMPLE`, `wJalr…EXAMPLEKEY`): never valid,
# quoted in every how-to. A real key id or secret ending so is not going to happen.
# Two string literals side by side, joined by `+` or nothing (Python, JavaScript, Go, ...), same quotes.
_SPLIT_LITERAL = re.compile(r"""(["'])([^"'\\\n]*)\1\s*\+?\s*\1([^"'\\\n]*)\1""")
_DOCUMENTED_EXAMPLE = re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{9}EXAMPLE|[A-Za-z0-9/+]{30}EXAMPLEKEY")

# Formats detect-secrets 1.5 does not know. Each regex matches the whole credential.
_EXTRA_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("GitHub fine-grained token", re.compile(r"github_pat_[A-Za-z0-9_]{22,}")),
    ("Anthropic API key", re.compile(r"sk-ant-[a-z]+\d{2}-[A-Za-z0-9_\-]{32,}")),
    ("OpenAI project key", re.compile(r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{32,}")),
    ("Google API key", re.compile(r"AIza[0-9A-Za-z_\-]{35}")),
    ("GCP service account key", re.compile(r"\"private_key_id\"\s*:\s*\"[0-9a-f]{40}\"")),
    ("Azure client secret", re.compile(r"(?<![\w~.\-])[\w~.\-]{3}\dQ~[\w~.\-]{31,34}(?![\w~.\-])")),
)


@dataclass(frozen=True)
class _Hit:
    kind: str
    evidence: str  # the credential's text, to look for in the base

    @property
    def heuristic(self) -> bool:
        return self.kind in _HEURISTIC_TYPES


def _load_plugins() -> tuple[BasePlugin, ...]:
    classes: Mapping[str, type[BasePlugin]] = get_mapping_from_secret_type_to_class()
    return tuple(cls() for kind, cls in sorted(classes.items()) if kind not in _IGNORED_TYPES)


_PLUGINS = _load_plugins()


def scan(changes: Sequence[FileChange], base_tree: Path | None = None) -> list[Finding]:
    """One finding per (added line, credential kind) that the base did not already contain."""
    base_lines = "\n".join(line.text for change in changes for line in (*change.removed, *change.context))
    base_lines += "\n" + _joined(base_lines)
    findings: list[Finding] = []
    for change in changes:
        if change.is_binary or not change.added:
            continue
        base_text = _base_text(change, base_tree)
        base_text += "\n" + _joined(base_text)
        heuristics = not (is_test_path(change.path) or heuristic.is_lock_file(change.path))
        added = {line.number: line.text for line in change.added}
        for line in change.added:
            for hit in _line_hits(change.path, line.text, heuristics):
                evidence = [hit.evidence]
                if hit.kind == "Private Key" and line.number + 1 in added:  # a new body under a known header
                    evidence.append(added[line.number + 1].strip())
                if all(part in base_lines or part in base_text for part in evidence):
                    continue
                if _DOCUMENTED_EXAMPLE.fullmatch(hit.evidence):
                    continue
                findings.append(_finding(hit, change.path, line.number))
    return findings


def _line_hits(path: str, line: str, heuristics: bool) -> list[_Hit]:
    """Known formats win: a line with a known credential does not also report its entropy."""
    hits = list(_known_hits(path, line))
    if not hits and (joined := _joined(line)) != line:
        hits = list(_known_hits(path, joined))
    if not hits and heuristics:
        hits = list(_heuristic_hits(path, line))
    unique: dict[str, _Hit] = {}
    for hit in hits:
        if not any(hit.evidence in seen for seen in unique):
            unique[hit.evidence] = hit
    return list(unique.values())


def _joined(text: str) -> str:
    """`text` with adjacent string literals joined (`"ghp_" + "aQhm…"` → `"ghp_aQhm…"`), so that a credential
    split to slip past the format detectors is seen whole."""
    previous = None
    while previous != text:
        previous, text = text, _SPLIT_LITERAL.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{m[1]}", text, count=1)
    return text


def _known_hits(path: str, line: str) -> Iterator[_Hit]:
    for plugin in _PLUGINS:
        if plugin.secret_type not in _HEURISTIC_TYPES:
            for secret in plugin.analyze_line(filename=path, line=line):
                yield _Hit(plugin.secret_type, _expand(line, str(secret.secret_value)))
    for kind, regex in _EXTRA_FORMATS:
        for match in regex.finditer(line):
            yield _Hit(kind, match.group(0))


def _heuristic_hits(path: str, line: str) -> Iterator[_Hit]:
    if heuristic.is_indirect_reference(line):
        return
    for plugin in _PLUGINS:
        if plugin.secret_type in _HEURISTIC_TYPES:
            for secret in plugin.analyze_line(filename=path, line=line):
                value = str(secret.secret_value)
                if not _looks_like_noise(value, line, plugin):
                    yield _Hit(plugin.secret_type, value)


def _looks_like_noise(value: str, line: str, plugin: BasePlugin) -> bool:
    """detect-secrets' own heuristic filters, which its scanners apply by default."""
    return (
        heuristic.is_sequential_string(value)
        or heuristic.is_potential_uuid(value)
        or heuristic.is_likely_id_string(value, line, plugin)
        or heuristic.is_templated_secret(value)
        or heuristic.is_prefixed_with_dollar_sign(value)
        or heuristic.is_not_alphanumeric_string(value)
    )


def _expand(line: str, value: str) -> str:
    """The whole token around a detector's value: some detectors report only a regex group (`ghp`)."""
    start = line.find(value)
    if start < 0:
        return value
    end = start + len(value)
    while start > 0 and _TOKEN_CHARS.match(line[start - 1]):
        start -= 1
    while end < len(line) and _TOKEN_CHARS.match(line[end]):
        end += 1
    return line[start:end]


def _base_text(change: FileChange, base_tree: Path | None) -> str:
    if base_tree is None or change.old_path is None:
        return ""
    try:
        return (base_tree / change.old_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _finding(hit: _Hit, path: str, line: int) -> Finding:
    slug = re.sub(r"[^a-z0-9]+", "-", hit.kind.lower()).strip("-")
    advice = "if it is a credential, remove it and rotate it" if hit.heuristic else "remove it and rotate it"
    message = f"{hit.kind} added by the patch: {advice}"
    return Finding(
        rule_id=f"secrets.{slug}",
        category=FindingCategory.secrets,
        severity=Severity.high if hit.heuristic else Severity.critical,
        message=message,
        file=path,
        line=line,
    )
