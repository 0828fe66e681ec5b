"""gitleaks' default rule set, evaluated in Python over the text a patch adds.

The rules are gitleaks' own data file, vendored unchanged in `reviewer/rules/gitleaks/gitleaks.toml` (MIT,
with its licence and upstream commit; `reviewer/gitleaks_refresh.py` brings a newer one). They are applied
the way gitleaks applies them: a rule runs only when one of its keywords is in the lower-cased text; its
secret is the `secretGroup` or the first non-empty group of the match; a secret whose Shannon entropy is not
above the rule's `entropy` is dropped; then the global and the rule's allowlists (regexes on the secret, the
match or the line, stopwords, paths, with `condition = "AND"`) can drop it. Path-only rules (a file kind,
such as `.p12`) report the file. Inline `gitleaks:allow` comments are not honoured: the patch's author is
the agent under review.

The regexes are Go RE2 syntax and are run with RE2 itself (`google-re2`), which has no backtracking, so a
patch cannot make a rule take exponential time (Python's `re` could). A regex RE2 cannot compile skips its
rule; `load()` counts and logs those.
"""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import re2  # type: ignore[import-untyped]
import structlog

RULES_FILE = Path(__file__).resolve().parent.parent / "rules" / "gitleaks" / "gitleaks.toml"
_log = structlog.get_logger(__name__)


class _Match(Protocol):
    def start(self, group: int = 0) -> int: ...
    def end(self, group: int = 0) -> int: ...
    def group(self, group: int = 0) -> str | None: ...
    def groups(self) -> tuple[str | None, ...]: ...


class _Regex(Protocol):
    def search(self, text: str) -> _Match | None: ...
    def finditer(self, text: str) -> Iterator[_Match]: ...


@dataclass(frozen=True)
class Allowlist:
    regexes: tuple[_Regex, ...] = ()
    paths: tuple[_Regex, ...] = ()
    stopwords: tuple[str, ...] = ()
    target: str = "secret"  # or "match", "line"
    all_conditions: bool = False  # condition = "AND"

    def path_allowed(self, path: str) -> bool:
        """gitleaks' early file check: an OR allowlist with paths, or an AND one with only paths."""
        if not self.paths or not any(regex.search(path) for regex in self.paths):
            return False
        return not self.all_conditions or not (self.regexes or self.stopwords)

    def allows(self, secret: str, match: str, line: str, path: str) -> bool:
        target = {"match": match, "line": line}.get(self.target, secret)
        lowered = secret.lower()
        regex_hit = any(regex.search(target) for regex in self.regexes)
        stopword_hit = any(word in lowered for word in self.stopwords)
        if not self.all_conditions:
            return regex_hit or stopword_hit
        checks = []
        if self.paths:
            checks.append(any(regex.search(path) for regex in self.paths))
        if self.regexes:
            checks.append(regex_hit)
        if self.stopwords:
            checks.append(stopword_hit)
        return bool(checks) and all(checks)


@dataclass(frozen=True)
class Rule:
    rule_id: str
    description: str
    regex: _Regex | None
    path: _Regex | None = None
    keywords: tuple[str, ...] = ()
    entropy: float = 0.0
    secret_group: int = 0
    allowlists: tuple[Allowlist, ...] = ()


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    allowlists: tuple[Allowlist, ...]
    commit: str | None
    skipped: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class Hit:
    rule_id: str
    description: str
    secret: str
    match: str
    start: int  # offsets of the match in the scanned text
    end: int
    path_only: bool = False


def shannon_entropy(text: str) -> float:
    """gitleaks' entropy: over characters, divided by the length in bytes (as its Go code does)."""
    if not text:
        return 0.0
    size = len(text.encode("utf-8"))
    return -sum(n / size * math.log2(n / size) for n in Counter(text).values())


def _compile(pattern: str) -> _Regex:
    compiled: _Regex = re2.compile(pattern)
    return compiled


def _allowlist(raw: dict[str, Any]) -> Allowlist:
    return Allowlist(
        regexes=tuple(_compile(pattern) for pattern in raw.get("regexes", [])),
        paths=tuple(_compile(pattern) for pattern in raw.get("paths", [])),
        stopwords=tuple(word.lower() for word in raw.get("stopwords", [])),
        target=raw.get("regexTarget") or "secret",
        all_conditions=str(raw.get("condition", "OR")).upper() == "AND",
    )


def load(path: Path = RULES_FILE) -> RuleSet:
    """The rule set in `path`; rules whose regexes RE2 cannot compile are skipped and counted."""
    from service_feature.reviewer.gitleaks_refresh import upstream_commit

    text = path.read_text(encoding="utf-8")
    document = tomllib.loads(text)
    rules: list[Rule] = []
    skipped: list[tuple[str, str]] = []
    for raw in document.get("rules", []):
        try:
            rules.append(
                Rule(
                    rule_id=raw["id"],
                    description=raw.get("description", raw["id"]),
                    regex=_compile(raw["regex"]) if raw.get("regex") else None,
                    path=_compile(raw["path"]) if raw.get("path") else None,
                    keywords=tuple(word.lower() for word in raw.get("keywords", [])),
                    entropy=float(raw.get("entropy", 0.0)),
                    secret_group=int(raw.get("secretGroup", 0)),
                    allowlists=tuple(_allowlist(item) for item in raw.get("allowlists", [])),
                )
            )
        except re2.error as error:
            skipped.append((str(raw.get("id")), str(error)))
    global_lists = [document["allowlist"]] if "allowlist" in document else []
    global_lists += document.get("allowlists", [])
    ruleset = RuleSet(
        tuple(rules), tuple(_allowlist(item) for item in global_lists), upstream_commit(text), tuple(skipped)
    )
    if skipped:
        _log.warning("gitleaks_rules_skipped", count=len(skipped), rules=[rule for rule, _ in skipped])
    return ruleset


@lru_cache(maxsize=1)
def default_rules() -> RuleSet:
    return load()


def scan_text(path: str, text: str, ruleset: RuleSet | None = None) -> list[Hit]:
    """gitleaks' findings in `text`, the added content of the file at `path`."""
    ruleset = ruleset or default_rules()
    if any(allowlist.path_allowed(path) for allowlist in ruleset.allowlists):
        return []
    lowered = text.lower()
    hits: list[Hit] = []
    for rule in ruleset.rules:
        if rule.keywords and not any(keyword in lowered for keyword in rule.keywords):
            continue
        hits.extend(_rule_hits(rule, path, text, ruleset.allowlists))
    return hits


def _rule_hits(rule: Rule, path: str, text: str, global_lists: Sequence[Allowlist]) -> Iterator[Hit]:
    if any(allowlist.path_allowed(path) for allowlist in rule.allowlists):
        return
    if rule.path is not None and not rule.path.search(path):
        return
    if rule.regex is None:
        if rule.path is not None:
            yield Hit(rule.rule_id, rule.description, path, path, 0, 0, path_only=True)
        return
    for found in rule.regex.finditer(text):
        match = (found.group(0) or "").strip("\n")
        if not match:
            continue
        start = found.start() + (found.group(0) or "").find(match)
        end = start + len(match)
        secret = match
        groups = found.groups()
        if groups:
            if rule.secret_group:
                secret = found.group(rule.secret_group) or ""
            else:
                secret = next((group for group in groups if group), match)
        if rule.entropy and shannon_entropy(secret) <= rule.entropy:
            continue
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        if any(a.allows(secret, match, line, path) for a in (*global_lists, *rule.allowlists)):
            continue
        yield Hit(rule.rule_id, rule.description, secret, match, start, end)
