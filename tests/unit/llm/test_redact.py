import hashlib
from pathlib import Path

import pytest

from service_feature.llm import redact as redact_module
from service_feature.llm.redact import MARKER, redact, redact_excerpt, redact_value

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "service_feature"

# Built at run time so that this file does not itself hold anything a secret scanner would flag.
ANTHROPIC = "sk-ant-" + "api03-" + "Xy7" * 12
OPENAI = "sk-" + "proj-" + "Ab3" * 12
OPENAI_LEGACY = "sk-" + "Qw9" * 16
GITHUB_CLASSIC = "gh" + "p_" + "a1B" * 12
GITHUB_FINE = "github" + "_pat_" + "11AB" * 8
AWS = "AKIA" + "IOSFODNN7EXAMPL9"
PEM_BODY = "MIIEpAIBAAKCAQEA" + "q8Z" * 20


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        (f"ANTHROPIC_API_KEY={ANTHROPIC}", ANTHROPIC, "anthropic-key"),
        (f'client = OpenAI(api_key="{OPENAI}")', OPENAI, "openai-key"),
        (f"export OPENAI_API_KEY={OPENAI_LEGACY}", OPENAI_LEGACY, "openai-key"),
        (f"remote: https://{GITHUB_CLASSIC}@github.com/o/r.git", GITHUB_CLASSIC, "github-token"),
        (f"GH_TOKEN {GITHUB_FINE}", GITHUB_FINE, "github-token"),
        (f"aws_access_key_id = {AWS}", AWS, "aws-access-key"),
        (
            "curl -H 'Authorization: Bearer abcDEF0123456789xyz.tok'",
            "abcDEF0123456789xyz.tok",
            "bearer-token",
        ),
        ("postgres://app:Pa55word@db:5432/app", "Pa55word", "password"),
        ('password = "hunter2"', "hunter2", "secret"),
        ("DB_PASSWORD=s3cr3t!", "s3cr3t!", "secret"),
        ('{"client_secret": "c0ffee-1234"}', "c0ffee-1234", "secret"),
        ("password: hunter2", "hunter2", "secret"),
        ("x-api-key: 0123456789abcdef", "0123456789abcdef", "secret"),
    ],
)
def test_each_secret_kind_is_redacted(text: str, secret: str, kind: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert f"{MARKER}{kind}]" in redacted


def test_a_private_key_block_is_redacted_whole_also_when_cut_off_or_line_numbered() -> None:
    block = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n{PEM_BODY[:20]}\n-----END RSA PRIVATE KEY-----"
    assert redact(f"key:\n{block}\nafter") == f"key:\n{MARKER}private-key]\nafter"
    numbered = f"     3\t-----BEGIN OPENSSH PRIVATE KEY-----\n     4\t{PEM_BODY}\n     5\tQyNTUx"
    assert redact(numbered) == f"     3\t{MARKER}private-key]"


def test_the_surroundings_of_a_secret_are_kept() -> None:
    assert redact(f"export ANTHROPIC_API_KEY={ANTHROPIC}  # prod") == (
        f"export ANTHROPIC_API_KEY={MARKER}anthropic-key]  # prod"
    )
    assert redact("https://bob:Pa55@host/x") == f"https://bob:{MARKER}password]@host/x"


ORDINARY_CODE = """
import os
import secrets

TOKEN_TYPE = "bearer"
max_tokens = 16384
usage = Usage(input_tokens=10, output_tokens=5, cached_input_tokens=0)
api_key = os.environ["API_KEY"]
password = user.password
secret = secrets.token_hex(16)
token: str | None = None
headers = {"Authorization": f"Bearer {token}"}
if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):
    return parse_pem(lines)
url = f"https://{user}:{password}@{host}"
DB_PASSWORD = "${DB_PASSWORD}"
vault_token: "{{ vault_token }}"
LOCAL_SERVER_API_KEY = "not-needed"
ANTHROPIC_API_KEY=sk-ant-...
task-abcdefghijklmnopqrstuvwxyz0123 is not a key
const tokenizer = new Tokenizer("cl100k_base");
func (s *Store) Password(ctx context.Context) (string, error) {
"""


def test_ordinary_code_is_left_alone() -> None:
    assert redact(ORDINARY_CODE) == ORDINARY_CODE


def test_the_agents_and_providers_own_sources_are_ordinary_code() -> None:
    sources = [
        path
        for folder in ("worker", "llm")
        for path in sorted((PACKAGE / folder).rglob("*.py"))
        if path.name != "redact.py"
    ]
    assert len(sources) > 10
    for path in sources:
        text = path.read_text()
        assert redact(text) == text, path


def test_redact_value_walks_transcript_entries() -> None:
    entry = {"name": "read_file", "arguments": {"path": ".env"}, "result": f"KEY={ANTHROPIC}", "n": 3}
    assert redact_value(entry) == {
        "name": "read_file",
        "arguments": {"path": ".env"},
        "result": f"KEY={MARKER}anthropic-key]",
        "n": 3,
    }
    assert redact_value([OPENAI, None, 1.5]) == [f"{MARKER}openai-key]", None, 1.5]


# -- bounded storage (issue 12, item 3) -----------------------------------------------------------------


def test_a_long_string_is_stored_as_head_tail_size_and_digest() -> None:
    text = "HEAD-" + "x" * 1_000_000 + "é" + "-TAIL"
    stored = redact_excerpt(text, 1000)
    assert stored.startswith("HEAD-")
    assert stored.endswith("-TAIL")
    assert len(stored) < 1000 + 200
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert f"{len(text):,} characters, {len(text.encode()):,} bytes, sha256 {digest}" in stored
    assert redact_excerpt("short", 1000) == "short"


@pytest.mark.parametrize(
    "secret", [ANTHROPIC, GITHUB_CLASSIC, f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}"]
)
def test_a_secret_across_a_cut_is_never_stored_in_part(secret: str) -> None:
    limit = 2000
    half = limit // 2
    for before in range(half - len(secret), half + 1, 7):  # the secret straddles the head's cut
        head_cut = "y\n" * (before // 2) + "z" * (before % 2) + " " + secret + "\n" + "w " * 20_000
        assert _fragments(secret, redact_excerpt(head_cut, limit)) == [], before
    for after in range(half - len(secret), half + 1, 7):  # and the tail's
        tail_cut = "w " * 20_000 + " " + secret + "\n" + "y" * after
        assert _fragments(secret, redact_excerpt(tail_cut, limit)) == [], after


def _fragments(secret: str, stored: str) -> list[str]:
    """The pieces of `secret` (12 characters or more, its recognisable prefix excluded) in `stored`."""
    body = secret[12:]
    return [body[i : i + 12] for i in range(len(body) - 11) if body[i : i + 12] in stored]


def test_bounded_redaction_never_runs_the_patterns_over_the_whole_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    original = redact_module.redact

    def measured(text: str) -> str:
        seen.append(len(text))
        return original(text)

    monkeypatch.setattr(redact_module, "redact", measured)
    huge = f"token = {ANTHROPIC}\n" + "data " * 2_000_000 + f"\npassword = '{ANTHROPIC}'"
    stored = redact_value({"arguments": {"content": huge, huge: 1}, "result": "ok"}, limit=10_000)
    assert max(seen) <= 10_000 + 2 * 4096 + 1
    assert ANTHROPIC not in repr(stored)
    (key,) = stored["arguments"].keys() - {"content"}
    assert len(key) < 11_000
    assert stored["result"] == "ok"


def test_lone_surrogates_become_storable() -> None:
    stored = redact_excerpt("a\ud800b", 100)
    assert stored.encode("utf-8") == "a\ufffdb".encode()
