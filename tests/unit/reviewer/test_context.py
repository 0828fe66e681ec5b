"""Public-by-design values and sample files: what removes a false alarm, and what only sends to a person."""

from __future__ import annotations

import pytest

from service_feature.diffs import parse_diff
from service_feature.models import Finding, Severity
from service_feature.reviewer.scanners import secrets
from service_feature.reviewer.scanners.context import PathKind, path_kind, public_reason
from tests.support.review_corpus import Files, MakePatch

TOKEN = "ghp_aQhm22ujFljgcZ0O2e94RIiX5dI6QRqgAh33"
HEX64 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def scan(make_patch: MakePatch, patch: Files) -> list[Finding]:
    checkouts = make_patch({"README.md": "x\n"}, patch)
    return secrets.scan(parse_diff(checkouts.diff), checkouts.base)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("docs/setup.md", PathKind.docs),
        ("README", PathKind.docs),
        ("guide.rst", PathKind.docs),
        (".env.example", PathKind.examples),
        ("config/.ENV.Sample", PathKind.examples),
        ("settings.py.dist", PathKind.examples),
        ("values.template.yaml", PathKind.examples),
        ("examples/client.py", PathKind.examples),
        ("pkg/testdata/out.golden", PathKind.test_data),
        ("src/__snapshots__/a.test.ts.snap", PathKind.test_data),
        ("spec/Fixtures/users.json", PathKind.test_data),
        ("app/template.py", PathKind.code),
        ("requirements.txt", PathKind.code),
        (".env", PathKind.code),
    ],
)
def test_path_kinds_follow_ecosystem_conventions(path: str, kind: PathKind) -> None:
    assert path_kind(path) is kind


@pytest.mark.parametrize(
    ("secret", "line", "heuristic"),
    [
        ("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "", False),
        ("changeme", "password=changeme", True),
        ("<your-token>", "", True),
        ("${DB_PASSWORD}", "", True),
        ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "", False),  # Stripe's documented key
        ("pk_live_51H8x2LKj3h4k5l6m7n8o9p0q1r2s3t4u5v6w7x8y9z", "", True),
        (HEX64, f"{HEX64}  app-1.0.tar.gz", True),
        (HEX64, f'TOOL_SHA256 = "{HEX64}"', True),
        ("confirm_password", 'CONFIRM_PASSWORD_FIELD = "confirm_password"', True),  # a field's name
        ("api-key", 'header = "api-key"', True),
        ("password", 'PASSWORD_FIELD = "password"', True),
    ],
)
def test_public_by_design_values(secret: str, line: str, heuristic: bool) -> None:
    assert public_reason(secret, line, heuristic) is not None


@pytest.mark.parametrize(
    ("secret", "line", "heuristic"),
    [
        (TOKEN, f'TOKEN = "{TOKEN}"', False),
        ("AKIAEXAMPLE7LZ4TPJ3M", "", False),  # the word hidden inside a key is no placeholder
        (HEX64, f'SIGNING_SECRET = "{HEX64}"', True),
        ("password", 'DB_PASSWORD = "password"', True),  # a weak password, not a field's name
        ("hunter2_password9", 'PASSWORD = "hunter2_password9"', True),
        # a digest name does not excuse a known format
        (
            "sk_live_r95e2kZcnPTduhrp7Nh3aYM5aQhm22uj",
            "checksum = sk_live_r95e2kZcnPTduhrp7Nh3aYM5aQhm22uj",
            False,
        ),
    ],
)
def test_values_that_are_not_public(secret: str, line: str, heuristic: bool) -> None:
    assert public_reason(secret, line, heuristic) is None


def test_a_known_format_in_docs_goes_to_a_person_with_the_reason(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {"docs/setup.md": f"    export GITHUB_TOKEN={TOKEN}\n"})

    assert [(f.rule_id, f.severity) for f in findings] == [("secrets.github-pat", Severity.high)]
    assert "documentation file" in findings[0].message
    assert TOKEN not in findings[0].message


def test_a_known_format_in_an_example_env_file_goes_to_a_person(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {".env.example": f"GITHUB_TOKEN={TOKEN}\n"})

    assert [(f.rule_id, f.severity) for f in findings] == [("secrets.github-pat", Severity.high)]


def test_the_same_token_in_code_is_critical(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {"app/gh.py": f'TOKEN = "{TOKEN}"\n'})

    assert [(f.rule_id, f.severity) for f in findings] == [("secrets.github-pat", Severity.critical)]


def test_public_by_design_values_make_no_finding(make_patch: MakePatch) -> None:
    patch = {
        ".env.example": "DATABASE_URL=postgres://app:changeme@localhost/app\nAPI_KEY=your-api-key-here\n",
        "docs/pay.md": "curl https://api.stripe.com/v1/charges -u sk_test_4eC39HqLyjWDarjtT1zdp7dc:\n",
        "web/pay.js": "const stripe = Stripe('pk_live_51H8x2LKj3h4k5l6m7n8o9p0q1r2s3t4u5v6w7x8y9z');\n",
        "release/SHA256SUMS": f"{HEX64}  app-1.0.tar.gz\n",
        "app/pins.py": f'UPSTREAM_COMMIT = "{HEX64[:40]}"\nTOOL_SHA256 = "{HEX64}"\n',
        "pkg/testdata/blob.golden": "q1W8sFh3LmZ0vXc7R2pK9tYb4NdE6gJu5AoIiCrTq1W8sFh3LmZ0vXc7R2pK9tYb4Nd==\n",
    }

    assert scan(make_patch, patch) == []


def test_a_token_wrapped_over_two_lines_is_found(make_patch: MakePatch) -> None:
    source = f'TOKEN = (\n    "{TOKEN[:20]}"\n    "{TOKEN[20:]}"\n)\n'

    findings = scan(make_patch, {"app/gh.py": source})

    assert [(f.rule_id, f.line, f.severity) for f in findings] == [
        ("secrets.github-pat", 2, Severity.critical)
    ]
