from __future__ import annotations

import pytest

from service_feature.diffs import parse_diff
from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.scanners import secrets
from tests.support.review_corpus import Files, MakePatch

AWS_KEY = "AKIAQX7LZ4TPJ3M6WB2E"
GITHUB_TOKEN = "ghp_aQhm22ujFljgcZ0O2e94RIiX5dI6QRqgAh33"
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAv3q7Zp0aX9fJk2LwQm8sT4yHcR6dN1eVbG5uKiOoPzA7tS3x\n"
    "-----END RSA PRIVATE KEY-----\n"
)
# Random-looking token characters, cut to the length a format needs.
RANDOM = (
    "aQhm22ujFljgcZ0O2e94RIiX5dI6QRqgAh33r95e2kZcnPTduhrp7Nh3aYM5Xq"
    "3p2oHwLwQcIygM6WW6WbvrghkPUewFxpIkAWQiR3WWu_aQ"
)
OTHER_PEM = PEM.replace("v3q7Zp0aX9fJk2LwQm8s", "Q2w9Lp4sZ8dKx1VbN7cM")


def scan(make_patch: MakePatch, base: Files, patch: Files) -> list[Finding]:
    checkouts = make_patch(base, patch)
    return secrets.scan(parse_diff(checkouts.diff), checkouts.base)


@pytest.mark.parametrize(
    ("line", "rule_id"),
    [
        (f'KEY_ID = "{AWS_KEY}"', "secrets.aws-access-token"),
        (f'TOKEN = "{GITHUB_TOKEN}"', "secrets.github-pat"),
        ("token: xoxb-482910376152-5038172946021-r95e2kZcnPTduhrp7Nh3aYM5", "secrets.slack-bot-token"),
        ('stripe.api_key = "sk_live_r95e2kZcnPTduhrp7Nh3aYM5aQhm22uj"', "secrets.stripe-access-token"),
        (f"GH=github_pat_11ABCDEFG0{RANDOM[:72]}", "secrets.github-fine-grained-pat"),
        (f"KEY=sk-ant-api03-{RANDOM[:93]}AA", "secrets.anthropic-api-key"),
        (f"OPENAI=sk-proj-{RANDOM[:74]}T3BlbkFJ{RANDOM[5:79]}", "secrets.openai-api-key"),
        ('maps_key = "AIzaSyD3p2oHwLwQcIygM6WW6WbvrghkPUewFxp"', "secrets.gcp-api-key"),
        ('"private_key_id": "0e1c9741298f9b8ad6b6ce46af02b6e4c4ce7886",', "secrets.gcp-service-account-key"),
        ("AZURE_CLIENT_SECRET=abc8Q~r95e2kZcnPTduhrp7Nh3aYM5aQhm22ujFl", "secrets.azure-ad-client-secret"),
        (
            f"conn = 'DefaultEndpointsProtocol=https;AccountKey={'q1W8sFh3Lm' * 8}Zk5aXY==;'",
            "secrets.azure-storage-account-access-key",
        ),
    ],
)
def test_a_known_credential_in_an_added_line_is_critical(
    make_patch: MakePatch, line: str, rule_id: str
) -> None:
    findings = scan(make_patch, {"app/config.py": "X = 1\n"}, {"app/config.py": f"X = 1\n{line}\n"})

    assert [(f.rule_id, f.severity, f.category, f.file, f.line) for f in findings] == [
        (rule_id, Severity.critical, FindingCategory.secrets, "app/config.py", 2)
    ]


def test_a_private_key_file_is_found(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {"README.md": "x\n"}, {"deploy/key.pem": PEM})

    assert [(f.rule_id, f.line) for f in findings] == [("secrets.private-key", 1)]


def test_the_message_never_quotes_the_secret(make_patch: MakePatch) -> None:
    (finding,) = scan(make_patch, {"a.py": "\n"}, {"a.py": f'\nTOKEN = "{GITHUB_TOKEN}"\n'})

    assert GITHUB_TOKEN not in finding.message
    assert GITHUB_TOKEN[4:12] not in finding.message


def test_a_secret_in_the_base_file_is_not_blamed(make_patch: MakePatch) -> None:
    base = {"app/settings.py": f'LEGACY = "{AWS_KEY}"\n' + "".join(f"X{n} = {n}\n" for n in range(20))}
    patched = base["app/settings.py"] + f'AGAIN = "{AWS_KEY}"\n'

    assert scan(make_patch, base, {"app/settings.py": patched}) == []


def test_a_secret_on_a_reformatted_line_is_not_blamed_even_without_a_base_tree(make_patch: MakePatch) -> None:
    checkouts = make_patch({"s.py": f"KEY='{AWS_KEY}'\n"}, {"s.py": f'KEY = "{AWS_KEY}"  # rotate\n'})

    assert secrets.scan(parse_diff(checkouts.diff), base_tree=None) == []


def test_a_secret_moved_to_a_new_file_is_not_blamed(make_patch: MakePatch) -> None:
    findings = scan(
        make_patch,
        {"old.py": f'TOKEN = "{GITHUB_TOKEN}"\nA = 1\nB = 2\nC = 3\n'},
        {"old.py": "A = 1\nB = 2\nC = 3\n", "new.py": f'TOKEN = "{GITHUB_TOKEN}"\n'},
    )

    assert findings == []


def test_a_different_secret_in_a_file_that_had_one_is_blamed(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {"s.py": f'KEY = "{AWS_KEY}"\n'}, {"s.py": 'KEY = "AKIAZZ7LZ4TPJ3M6WB2E"\n'})

    assert [f.rule_id for f in findings] == ["secrets.aws-access-token"]


def test_a_private_key_under_a_reworded_header_line_is_the_base_key_when_its_body_is_unchanged(
    make_patch: MakePatch,
) -> None:
    base = {"keys.py": f'KEY = """{PEM}"""\n'}

    assert scan(make_patch, base, {"keys.py": f'SIGNING_KEY = """{PEM}"""\n'}) == []


def test_a_new_private_key_under_a_reworded_header_line_is_blamed(make_patch: MakePatch) -> None:
    base = {"keys.py": f'KEY = """{PEM}"""\n'}

    findings = scan(make_patch, base, {"keys.py": f'SIGNING_KEY = """{OTHER_PEM}"""\n'})

    assert [(f.rule_id, f.line) for f in findings] == [("secrets.private-key", 1)]


def test_high_entropy_and_keyword_hits_are_high_not_critical(make_patch: MakePatch) -> None:
    patch = {
        "app/s.py": (
            'SALT = "3+2oHwLwQcIygM6WW6WbvrghkPUewFxpIkA/WQiR3WWu"\ndb_password = "Tr0ub4dor-and-3-prod"\n'
        )
    }

    findings = scan(make_patch, {"app/s.py": ""}, patch)

    assert sorted((f.rule_id, f.severity) for f in findings) == [
        ("secrets.base64-high-entropy-string", Severity.high),
        ("secrets.generic-api-key", Severity.high),
    ]


def test_heuristics_stay_quiet_in_tests_and_lock_files_but_known_formats_do_not(
    make_patch: MakePatch,
) -> None:
    digest = '"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"'
    patch = {
        "tests/test_x.py": f"EXPECTED = {digest}\npassword = 'correct-horse-battery'\n",
        "poetry.lock": f"hash = {digest}\n",
        "tests/test_y.py": f'TOKEN = "{GITHUB_TOKEN}"\n',
    }

    findings = scan(make_patch, {"README.md": "x\n"}, patch)

    assert [(f.rule_id, f.file) for f in findings] == [("secrets.github-pat", "tests/test_y.py")]


def test_ordinary_code_and_removed_lines_are_not_secrets(make_patch: MakePatch) -> None:
    base = {"app.py": f'OLD = "{GITHUB_TOKEN}"\n'}
    patch = {
        "app.py": (
            "import os\n"
            'TOKEN = os.environ["GITHUB_TOKEN"]\n'
            'ORDER_ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"\n'
            'TEMPLATE = "${API_KEY}"\n'
            'ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"\n'
        )
    }

    assert scan(make_patch, base, patch) == []


@pytest.mark.parametrize(
    "line",
    [
        f'TOKEN = "{GITHUB_TOKEN[:4]}" + "{GITHUB_TOKEN[4:]}"',
        f"const token = '{GITHUB_TOKEN[:10]}' + '{GITHUB_TOKEN[10:20]}' + '{GITHUB_TOKEN[20:]}';",
        f'TOKEN = ("{GITHUB_TOKEN[:4]}" "{GITHUB_TOKEN[4:]}")',
    ],
)
def test_a_credential_split_into_string_literals_is_found_whole(make_patch: MakePatch, line: str) -> None:
    findings = scan(make_patch, {"app.py": "\n"}, {"app.py": line + "\n"})

    assert [(f.rule_id, f.severity) for f in findings] == [("secrets.github-pat", Severity.critical)]


def test_a_split_credential_the_base_had_is_not_blamed(make_patch: MakePatch) -> None:
    split = f'TOKEN = "{GITHUB_TOKEN[:4]}" + "{GITHUB_TOKEN[4:]}"\n'

    assert scan(make_patch, {"app.py": split}, {"app.py": split + "OTHER = 1\n"}) == []


def test_aws_documented_example_credentials_are_not_secrets(make_patch: MakePatch) -> None:
    how_to = (
        "Set `AWS_ACCESS_KEY_ID` (it looks like `AKIAIOSFODNN7EXAMPLE`)\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    )
    assert scan(make_patch, {"docs/s3.md": "# S3\n"}, {"docs/s3.md": how_to}) == []


def test_a_key_that_only_contains_example_is_still_a_key(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {"s.py": "\n"}, {"s.py": 'KEY_ID = "AKIAEXAMPLE7LZ4TPJ3M"\n'})

    assert [f.rule_id for f in findings] == ["secrets.aws-access-token"]


def test_binary_files_are_left_to_the_policy_scanner(make_patch: MakePatch) -> None:
    assert scan(make_patch, {"a.txt": "x\n"}, {"blob.bin": b"\x00" + GITHUB_TOKEN.encode()}) == []
