"""Context that tells a public-by-design value from a credential, and a sample file from code.

Two questions the format detectors cannot answer alone:

- **Is the value public by design?** Placeholders (`changeme`, `example`, `xxxx`, `<your-key>`, `${TOKEN}`,
  `{{ token }}`), tokens that vendors print in their own documentation, publishable client-side keys (Stripe's
  `pk_live_`/`pk_test_`, which ship in every web page that takes a payment), and published checksums (a hex
  digest next to a file name or under a `sha256`/`checksum`/`integrity` key). Such a value is not reported.
- **Where is it?** Documentation (`docs/`, `*.md`), examples (`examples/`, `.env.example`, `*.sample`,
  `*.dist`, `*.template`) and test data (`testdata/`, `fixtures/`, `__snapshots__/`, `*.golden`, `*.snap`)
  hold sample values on purpose. There the heuristic detectors do not run, and a known format is sent to a
  person (high) rather than rejected: it may be a published sample or a pasted live key, and only a person
  can tell.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import PurePosixPath


class PathKind(StrEnum):
    code = "code"
    docs = "documentation"
    examples = "example"
    test_data = "test-data"


_DOC_DIRS = frozenset({"docs", "doc", "documentation", "site", "wiki"})
_DOC_SUFFIXES = frozenset({".md", ".mdx", ".rst", ".adoc", ".asciidoc"})
_EXAMPLE_DIRS = frozenset({"examples", "example", "samples", "sample", "demo", "demos"})
# `.env.example`, `config.sample.yml`, `settings.py.dist`, `app.env.template`, `example.env`: a last or
# second-to-last name part, or a first one; not in source files (`template.py` is code).
_EXAMPLE_NAME = re.compile(r"(?:^|\.)(?:example|sample|dist|template|tmpl)(?:\.\w+)?$|^(?:example|sample)\.")
_SOURCE_SUFFIXES = frozenset(
    {".py", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".go", ".rs", ".java", ".rb"}
)
_TEST_DATA_DIRS = frozenset(
    {"testdata", "test-data", "test_data", "fixtures", "__fixtures__", "__snapshots__", "golden", "goldens"}
)
_TEST_DATA_SUFFIXES = frozenset({".golden", ".snap", ".snapshot"})


def path_kind(path: str) -> PathKind:
    """What a file is for, by the conventions of most ecosystems (case-insensitive)."""
    pure = PurePosixPath(path.lower())
    directories = set(pure.parts[:-1])
    if directories & _TEST_DATA_DIRS or pure.suffix in _TEST_DATA_SUFFIXES:
        return PathKind.test_data
    named_example = pure.suffix not in _SOURCE_SUFFIXES and _EXAMPLE_NAME.search(pure.name.lstrip("."))
    if directories & _EXAMPLE_DIRS or named_example:
        return PathKind.examples
    if directories & _DOC_DIRS or pure.suffix in _DOC_SUFFIXES or pure.name.startswith("readme"):
        return PathKind.docs
    return PathKind.code


_PLACEHOLDER = re.compile(
    # A word after a non-alphanumeric character: `AKIAEXAMPLE7…` is a key that hides the word inside.
    r"(?i)(?<![a-z0-9])(?:change[_-]?me|changeit|example|placeholder|your[_-]?(?:api|secret|token|key|pass|own)"
    r"|replace[_-]?(?:me|with|this)|redacted|dummy|not[_-]?a[_-]?real|fake|insert[_-]?here)|"
    r"x{4,}|X{4,}|\*{4,}|\.{4,}|0{12,}|<[^<>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|%\([^)]*\)s|\$[A-Z_]{3,}"
)
# Tokens vendors print in their own documentation; never valid, quoted in how-tos and SDK readmes.
_DOCUMENTED = frozenset(
    {
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",  # Stripe's API reference
        "sk_test_BQokikJOvBiI2HlWgH4olfQ2",  # Stripe's older docs
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNT"
        "E2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",  # jwt.io's sample
        "xoxb-not-a-real-token-this-will-not-work",  # Slack's docs
    }
)
_DOCUMENTED_AWS = re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{9}EXAMPLE|[A-Za-z0-9/+]{30}EXAMPLEKEY")
_PUBLISHABLE = re.compile(r"^(?:pk_(?:live|test)_|pub-|publishable)", re.IGNORECASE)
_PUBLIC_NAME = re.compile(
    r"(?i)publishable|(?:^|[^a-z])(?:NEXT_PUBLIC|VITE|REACT_APP|NUXT_PUBLIC|EXPO_PUBLIC)_|public[_-]?key"
)
_HEX_DIGEST = re.compile(
    r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{56}|[0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})$"
)
_CHECKSUM_CONTEXT = re.compile(
    r"(?i)sha-?(?:1|224|256|384|512)|md5|blake2|checksum|digest|integrity|hash|\bsum\b|etag"
    r"|commit|revision|\brev\b|\bref\b"  # a git object id is public: it names a published commit
    r"|[0-9a-f]{32,128}\s+\*?[\w./-]+\.\w{1,10}\b|\b[\w./-]+\.\w{1,10}\s*[:=]?\s*[0-9a-f]{32,128}"
)
# A field, form or setting name that says what it holds ("confirm_password", "api-key", "auth.token"):
# words of letters joined by `_`, `-` or `.`, one of them a secret's name. A password is not written so.
_FIELD_NAME = re.compile(r"^[a-z]+(?:[_.-][a-z]+)+$|^[A-Z]+(?:_[A-Z]+)+$|^[a-z]+(?:[A-Z][a-z]+)+$")
_SECRET_WORD = re.compile(r"(?i)pass(?:word|wd|phrase)?|secret|token|key|pwd|credential")
# …or one such word held by a constant named for what it names (`PASSWORD_FIELD = "password"`).
_NAMING_CONSTANT = re.compile(r"(?i)\b\w*_?(?:field|name|param|column|attr|label|header|input)s?\b\s*[:=]")
_SRI = re.compile(r"^(?:sha256|sha384|sha512)-[A-Za-z0-9+/]+={0,2}$")


def public_reason(secret: str, line: str, heuristic: bool) -> str | None:
    """Why `secret` (found on `line`) is public by design, or None; `heuristic`: found by entropy or keyword
    (a name such as `publishable_key` or a checksum context excuses those, not a known format)."""
    if secret in _DOCUMENTED or _DOCUMENTED_AWS.fullmatch(secret):
        return "a token from a vendor's documentation"
    if _PLACEHOLDER.search(secret):
        return "a placeholder"
    if _PUBLISHABLE.search(secret):
        return "a publishable client-side key"
    if heuristic:
        if _SRI.fullmatch(secret) or (_HEX_DIGEST.fullmatch(secret) and _CHECKSUM_CONTEXT.search(line)):
            return "a published checksum"
        if _PUBLIC_NAME.search(line):
            return "a value named public or publishable"
        if _SECRET_WORD.search(secret) and (
            _FIELD_NAME.fullmatch(secret) or (secret.isalpha() and _NAMING_CONSTANT.search(line))
        ):
            return "the name of a field or setting, not its value"
    return None
