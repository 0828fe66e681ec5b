"""Secrets in the text a patch adds: gitleaks' rule set, a few detect-secrets detectors, and context.

Known formats come from gitleaks' maintained rule set (`scanners/gitleaks.py`, the vendored data file under
`rules/gitleaks/`), run over each run of consecutive added lines, so multi-line formats (a PEM private key)
are seen whole. detect-secrets 1.5 adds the formats gitleaks has no rule for (credentials in URLs, Azure
storage account keys, IBM and Cloudant keys) and its two heuristics, entropy and secret keywords; gitleaks'
`generic-api-key` counts as a heuristic too. Our own format is only GCP's service-account `private_key_id`,
which neither has. detect-secrets' plugins are called directly on each line: its file scanner depends on the
working directory and global settings, and it never verifies anything here (no verification policy is set).

Decision inputs (see docs/review.md for the table):
- a known format in code, configuration or tests is critical: confirmed, it rejects;
- a heuristic hit (entropy, keyword, generic key) is high: a person tells a credential from a fixture;
- a known format in documentation, examples or test data (`context.path_kind`) is high, with the reason,
  and heuristics do not run there, nor in test and lock files, where digests and fake passwords are normal;
- public-by-design values are not reported (`context.public_reason`): placeholders, vendors' documented
  tokens, publishable keys, published checksums.

A credential split into adjacent string literals (`"ghp_" + "…"`) is found: each line is also matched with
such literals joined. Inline allowlist pragmas are ignored: the patch's author is the agent under review.
A secret is not blamed on the patch when the base already had it: its text appears in a removed or context
line of the diff (a moved or re-indented line) or in the base version of the file (`base_tree`). Messages
never quote the secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.plugins.base import BasePlugin

from service_feature.diffs import DiffLine, FileChange
from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.scanners import gitleaks
from service_feature.reviewer.scanners.context import PathKind, path_kind, public_reason
from service_feature.reviewer.scanners.paths import is_test_path

_HEURISTIC_TYPES = frozenset({"Base64 High Entropy String", "Hex High Entropy String", "Secret Keyword"})
# detect-secrets formats that gitleaks' rule set does not have; its other format detectors duplicate
# gitleaks rules (AWS, GitHub, Slack, Stripe, JWT, ...) and are not run.
_DETECT_SECRETS_FORMATS = frozenset(
    {
        "Basic Auth Credentials",
        "Azure Storage Account access key",
        "Cloudant Credentials",
        "IBM Cloud IAM Key",
        "IBM COS HMAC Credentials",
        "SoftLayer Credentials",
    }
)
_GITLEAKS_HEURISTIC = frozenset({"generic-api-key"})
# gitleaks' `private-key` needs the END line too; in a diff that line is often unchanged context, so a header
# followed by an added line of key material is a key as well (detect-secrets' view of it).
_KEY_HEADER = re.compile(r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----")
_TOKEN_CHARS = re.compile(r"[\w\-+/=.~]")
# Two string literals side by side, joined by `+` or nothing (Python, JavaScript, Go, ...), same quotes.
_SPLIT_LITERAL = re.compile(r"""(["'])([^"'\\\n]*)\1\s*\+?\s*\1([^"'\\\n]*)\1""")
# Our own format, which neither gitleaks nor detect-secrets knows.
_EXTRA_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("gcp-service-account-key", re.compile(r"\"private_key_id\"\s*:\s*\"[0-9a-f]{40}\"")),
)


@dataclass(frozen=True)
class _Hit:
    rule: str  # kebab-case: gitleaks' id or detect-secrets' type
    description: str
    evidence: str  # the credential's text, to look for in the base
    line: int
    heuristic: bool


def _load_plugins(types: frozenset[str]) -> tuple[BasePlugin, ...]:
    classes: Mapping[str, type[BasePlugin]] = get_mapping_from_secret_type_to_class()
    return tuple(cls() for kind, cls in sorted(classes.items()) if kind in types)


_FORMAT_PLUGINS = _load_plugins(_DETECT_SECRETS_FORMATS)
_HEURISTIC_PLUGINS = _load_plugins(_HEURISTIC_TYPES)


def scan(changes: Sequence[FileChange], base_tree: Path | None = None) -> list[Finding]:
    """One finding per (added line, credential kind) that the base did not already contain."""
    base_lines = "\n".join(line.text for change in changes for line in (*change.removed, *change.context))
    base_lines += "\n" + _joined(base_lines)
    findings: list[Finding] = []
    for change in changes:
        if change.is_binary or not change.added or not change.exists_after:
            continue
        kind = path_kind(change.path)
        heuristics = kind is PathKind.code and not (
            is_test_path(change.path) or heuristic.is_lock_file(change.path)
        )
        base_text = _base_text(change, base_tree)
        base_text += "\n" + _joined(base_text)
        texts = {line.number: line.text for line in change.added}
        seen: set[tuple[int, str]] = set()
        for hit in _hits(change.path, change.added, heuristics):
            if (hit.line, hit.rule) in seen:
                continue
            evidence = [part.strip() for part in hit.evidence.splitlines() if part.strip()] or [hit.evidence]
            if all(part in base_lines or part in base_text for part in evidence):
                continue
            if public_reason(hit.evidence, texts.get(hit.line, ""), hit.heuristic):
                continue
            seen.add((hit.line, hit.rule))
            findings.append(_finding(hit, change.path, kind))
    return findings


def _hits(path: str, added: Sequence[DiffLine], heuristics: bool) -> list[_Hit]:
    """Known formats first; a line with a known credential does not also report a heuristic hit."""
    known: list[_Hit] = []
    for block in _blocks(added):
        known += _gitleaks_hits(path, block)
        known += _split_block_hits(path, block, known)
    for line in added:
        if not any(hit.line == line.number and not hit.heuristic for hit in known):
            joined = _joined(line.text)
            if joined != line.text:
                known += _gitleaks_hits(path, [DiffLine(line.number, joined)])
        known += _format_hits(path, line)
    known_lines = {hit.line for hit in known if not hit.heuristic}
    hits = [hit for hit in known if not (hit.heuristic and hit.line in known_lines)]
    if not heuristics:
        return [hit for hit in hits if not hit.heuristic]
    for line in added:
        if line.number not in known_lines and not any(h.line == line.number for h in hits):
            hits += _heuristic_hits(path, line)
    return hits


def _blocks(added: Sequence[DiffLine]) -> Iterator[list[DiffLine]]:
    """Runs of consecutive added lines: what gitleaks sees of a diff."""
    block: list[DiffLine] = []
    for line in added:
        if block and line.number != block[-1].number + 1:
            yield block
            block = []
        block.append(line)
    if block:
        yield block


def _gitleaks_hits(path: str, block: Sequence[DiffLine]) -> list[_Hit]:
    text = "\n".join(line.text for line in block)
    hits = []
    for found in gitleaks.scan_text(path, text):
        line = block[text.count("\n", 0, found.start)].number if not found.path_only else block[0].number
        evidence = found.secret if found.rule_id != "private-key" else found.match
        heuristic_hit = found.rule_id in _GITLEAKS_HEURISTIC
        hits.append(_Hit(found.rule_id, found.description, evidence, line, heuristic_hit))
    if not any(hit.rule == "private-key" for hit in hits):
        for header, body in pairwise(block):
            if _KEY_HEADER.search(header.text) and body.text.strip():
                evidence = f"{header.text.strip()}\n{body.text.strip()}"
                hits.append(_Hit("private-key", "Private Key", evidence, header.number, False))
    return hits


def _split_block_hits(path: str, block: Sequence[DiffLine], known: Sequence[_Hit]) -> list[_Hit]:
    """Known formats in the block with adjacent literals joined across lines too (`TOKEN = ("ghp_…"` then
    `"…")`, wrapped for a line-length limit); each is placed on the line where its first part is."""
    text = "\n".join(line.text for line in block)
    joined = _joined(text)
    if joined == text:
        return []
    hits = []
    for hit in _gitleaks_hits(path, [DiffLine(block[0].number, line) for line in joined.split("\n")]):
        if hit.heuristic or any(hit.evidence in seen.evidence for seen in known):
            continue
        head = hit.evidence[:8]
        line = next((line.number for line in block if head in line.text), block[0].number)
        hits.append(_Hit(hit.rule, hit.description, hit.evidence, line, False))
    return hits


def _format_hits(path: str, line: DiffLine) -> Iterator[_Hit]:
    for plugin in _FORMAT_PLUGINS:
        for secret in plugin.analyze_line(filename=path, line=line.text):
            evidence = _expand(line.text, str(secret.secret_value))
            yield _Hit(_slug(plugin.secret_type), plugin.secret_type, evidence, line.number, False)
    for rule, regex in _EXTRA_FORMATS:
        for match in regex.finditer(line.text):
            yield _Hit(rule, "GCP service account key", match.group(0), line.number, False)


def _heuristic_hits(path: str, line: DiffLine) -> Iterator[_Hit]:
    if heuristic.is_indirect_reference(line.text):
        return
    for plugin in _HEURISTIC_PLUGINS:
        for secret in plugin.analyze_line(filename=path, line=line.text):
            value = str(secret.secret_value)
            if not _looks_like_noise(value, line.text, plugin):
                yield _Hit(_slug(plugin.secret_type), plugin.secret_type, value, line.number, True)


def _slug(kind: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")


def _joined(text: str) -> str:
    """`text` with adjacent string literals joined (`"ghp_" + "aQhm…"` → `"ghp_aQhm…"`), so that a credential
    split to slip past the format detectors is seen whole."""
    previous = None
    while previous != text:
        previous, text = text, _SPLIT_LITERAL.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{m[1]}", text, count=1)
    return text


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


def _finding(hit: _Hit, path: str, kind: PathKind) -> Finding:
    if hit.heuristic:
        severity, advice = Severity.high, "if it is a credential, remove it and rotate it"
    elif kind is not PathKind.code:
        severity = Severity.high
        advice = (
            f"it is in a {kind.value} file, so it may be a published sample: a person should check that it "
            "is not a live credential"
        )
    else:
        severity, advice = Severity.critical, "remove it and rotate it"
    return Finding(
        rule_id=f"secrets.{hit.rule}",
        category=FindingCategory.secrets,
        severity=severity,
        message=f"{hit.description.rstrip('.')} ({hit.rule}) added by the patch: {advice}",
        file=path,
        line=hit.line,
    )
