"""Secrets out of what is sent to a model provider and what is stored from a conversation with one.

A repository or a test run may print credentials: a `.env` file the model reads, a test failure that dumps a
configuration. Tool output is stored in the transcript (readable through the API) and sent to a third-party
model provider, so known credential formats are replaced by `[REDACTED:<kind>]` before either happens.

What is recognised: Anthropic (`sk-ant-…`) and OpenAI (`sk-…`, `sk-proj-…`) API keys, GitHub tokens
(`ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`, `github_pat_`), AWS access key ids (`AKIA…`, `ASIA…`), PEM private key
blocks, `Bearer` tokens, passwords in URLs (`https://user:pw@host`), and literal values assigned to a
secret-looking name (`password = "…"`, `API_KEY=…`, `"client_secret": "…"`, `token: …`).

Assignments are where ordinary code would be hit, so they are narrowed: the name must END in a secret word
(`max_tokens`, `token_type`, `tokenizer` do not), and a value that looks like code or a placeholder is left
alone — a word of letters, `_`, `.` and `-` only (`password = user.password`, `token: str`,
`api_key = "not-needed"`), an unquoted call or subscript (`os.environ["API_KEY"]`), a template or reference
(`${DB_PASSWORD}`, `{{ vault_token }}`, `sk-ant-...`). The price: an all-letters password
(`PASSWORD=changeme`) is kept. A password in a URL is always redacted: the URL is a credential.

What is stored is also bounded: `redact_value(..., limit=)` keeps a string longer than `limit` as its head and
tail around a note of its size and sha256 (`redact_excerpt`), and runs the patterns over those parts only —
over a 50 MB tool argument they would hold a thread, and the event loop with it, for many seconds.

This module is only a safety net for transcripts and prompts (the agent's tool results, the diff the reviewer
shows its model); the reviewer's secret scanner judges patches with its own, broader detectors.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

MARKER = "[REDACTED:"
_HASHED_CHARS = 1 << 20
_MARGIN = 4_096  # characters redacted past each cut of an excerpt: a secret across the cut is still seen

_KEY_BODY = r"[A-Za-z0-9_\-]{20,}"
_CREDENTIAL_NAME = (
    r"(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"client[_-]?secret|secret[_-]?key|credentials?)"
)

_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?=[\s\S]{0,300}?[A-Za-z0-9+/=]{40})"  # a body follows: not a header string in a PEM parser
    r"(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"  # the whole block
    r"|(?:\r?\n[ \t]*(?:\d+\t)?[A-Za-z0-9+/=]+[ \t]*(?=\r?\n|$))+)"  # or, cut off, its base64 lines
)
_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private-key", _PRIVATE_KEY),
    ("anthropic-key", re.compile(r"(?<![\w-])sk-ant-" + _KEY_BODY)),
    ("openai-key", re.compile(r"(?<![\w-])sk-(?:proj-|svcacct-|admin-)?" + _KEY_BODY)),
    ("github-token", re.compile(r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("aws-access-key", re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Za-z0-9])")),
)
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]{16,}=*")
_URL_PASSWORD = re.compile(r"(://[^/\s:@[\]]+:)(?![$%{<])[^/\s@]{3,}(@)")
_ASSIGNMENT = re.compile(
    rf"(?i)(?<![\w-])([\"']?[\w.-]*?{_CREDENTIAL_NAME}[\"']?\s*[:=]\s*)"  # name, then = or :
    r"([\"']?)([^\s\"'`,;)}]{4,})\2"  # the value, quoted or not
)
_WORD = re.compile(r"[A-Za-z_.\-]+")  # a name, an attribute, a placeholder word: no digit, no symbol
_CODE = re.compile(r".*[(\[].*")  # a call or a subscript
_REFERENCE = ("$", "{", "<", "%", "[")  # ${VAR}, {{ tmpl }}, <placeholder>, %(name)s, [REDACTED:…]
_ELLIPSIS = ("...", "…")  # sk-ant-..., an example in documentation
_SURROGATE = re.compile("[\ud800-\udfff]")


def redact(text: str) -> str:
    """`text` with every recognised secret replaced by `[REDACTED:<kind>]`."""
    for kind, pattern in _FORMATS:
        text = pattern.sub(f"{MARKER}{kind}]", text)
    text = _BEARER.sub(rf"\1{MARKER}bearer-token]", text)
    text = _URL_PASSWORD.sub(rf"\1{MARKER}password]\2", text)
    return _ASSIGNMENT.sub(_redact_assignment, text)


def _redact_assignment(match: re.Match[str]) -> str:
    name, quote, value = match.groups()
    if (
        value.startswith(_REFERENCE)
        or value.endswith(_ELLIPSIS)
        or _WORD.fullmatch(value)
        or (not quote and _CODE.fullmatch(value))
    ):
        return match.group(0)
    return f"{name}{quote}{MARKER}secret]{quote}"


def redact_value(value: Any, limit: int | None = None) -> Any:
    """A JSON-like value (a transcript entry) with every string in it redacted and, with a `limit`, every
    string (a dictionary key too) longer than `limit` characters cut to an excerpt (`redact_excerpt`)."""
    if isinstance(value, str):
        return redact(value) if limit is None else redact_excerpt(value, limit)
    if isinstance(value, dict):
        return {_key(key, limit): redact_value(item, limit) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, limit) for item in value]
    return value


def _key(key: Any, limit: int | None) -> Any:
    """A key as stored: cut like any string, but not redacted (keys are names, not values)."""
    if limit is None or not isinstance(key, str) or len(key) <= limit:
        return key
    return redact_excerpt(key, limit)


def redact_excerpt(text: str, limit: int) -> str:
    """`text` redacted; when longer than `limit` characters, its redacted head and tail around a note of
    what was cut and of the whole text's size and sha256. The patterns run over at most `limit` + twice
    `_MARGIN` characters: each cut is redacted with a margin past it, so a secret that straddles the cut
    is recognised whole and never stored in part. Lone surrogates (which no database can store) become
    U+FFFD."""
    if len(text) <= limit:
        return _storable(redact(text))
    half = limit // 2
    head = redact(text[: half + _MARGIN])[:half]
    tail = redact(text[-(half + _MARGIN) :])[-half:] if half else ""
    return _storable(f"{head}\n{_elision_note(text, len(text) - 2 * half)}\n{tail}")


def _elision_note(text: str, elided: int) -> str:
    """What was cut, and the whole text's size and digest, computed a megabyte at a time: one encoding of a
    50 MB string would hold the interpreter (and so the event loop) for tens of milliseconds."""
    digest = hashlib.sha256()
    size = 0
    for start in range(0, len(text), _HASHED_CHARS):
        data = text[start : start + _HASHED_CHARS].encode("utf-8", "surrogatepass")
        size += len(data)
        digest.update(data)
    return (
        f"[… {elided:,} characters elided; the whole text had {len(text):,} characters, "
        f"{size:,} bytes, sha256 {digest.hexdigest()} …]"
    )


def _storable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text
