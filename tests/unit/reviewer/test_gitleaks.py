"""gitleaks' rule set evaluated in Python: keywords, secret groups, entropy, allowlists, RE2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from service_feature.reviewer import gitleaks_refresh
from service_feature.reviewer.scanners import gitleaks


def test_the_vendored_rule_set_loads_whole_with_its_licence_and_commit() -> None:
    ruleset = gitleaks.default_rules()
    text = gitleaks.RULES_FILE.read_text(encoding="utf-8")

    assert len(ruleset.rules) >= 200
    assert ruleset.skipped == ()  # every regex compiles with RE2, the engine gitleaks itself uses
    assert ruleset.commit is not None
    assert len(ruleset.commit) == 40
    assert "MIT License" in text[:400]
    assert "MIT License" in (gitleaks.RULES_FILE.parent / "LICENSE").read_text(encoding="utf-8")


def test_a_known_format_is_found_with_its_secret_group() -> None:
    token = "ghp_aQhm22ujFljgcZ0O2e94RIiX5dI6QRqgAh33"

    hits = gitleaks.scan_text("app/x.py", f'TOKEN = "{token}"')

    assert {(hit.rule_id, hit.secret) for hit in hits if hit.rule_id == "github-pat"} == {
        ("github-pat", token)
    }


def test_entropy_and_the_rule_allowlists_drop_what_gitleaks_drops() -> None:
    low_entropy = "ghp_" + "a" * 36
    example = "AKIAIOSFODNN7EXAMPLE"  # the AWS rule's allowlist: `.+EXAMPLE$`

    assert gitleaks.scan_text("x.py", f'T = "{low_entropy}"') == []
    assert [
        hit for hit in gitleaks.scan_text("x.py", f'K = "{example}"') if hit.rule_id == "aws-access-token"
    ] == []


def test_keywords_gate_a_rule() -> None:
    rule = gitleaks.Rule("t", "t", gitleaks._compile(r"\d{6}"), keywords=("pin",))
    ruleset = gitleaks.RuleSet((rule,), (), None)

    assert gitleaks.scan_text("x", "code 123456", ruleset) == []
    assert [hit.secret for hit in gitleaks.scan_text("x", "PIN 123456", ruleset)] == ["123456"]


def test_an_and_allowlist_needs_every_condition() -> None:
    allow = gitleaks.Allowlist(
        regexes=(gitleaks._compile("^safe"),), paths=(gitleaks._compile(r"\.md$"),), all_conditions=True
    )

    assert allow.allows("safe-1", "safe-1", "", "a.md")
    assert not allow.allows("safe-1", "safe-1", "", "a.py")
    assert not allow.path_allowed("a.md")  # it has regexes too, so the file is not skipped whole


def test_a_path_only_rule_reports_the_file() -> None:
    hits = gitleaks.scan_text("deploy/cert.p12", "binary-ish")

    assert [(hit.rule_id, hit.path_only) for hit in hits] == [("pkcs12-file", True)]


def test_gitleaks_global_path_allowlist_skips_vendored_dependencies() -> None:
    assert (
        gitleaks.scan_text("node_modules/x/index.js", 'T = "ghp_aQhm22ujFljgcZ0O2e94RIiX5dI6QRqgAh33"') == []
    )


def test_a_pathological_line_is_scanned_by_a_non_backtracking_engine() -> None:
    """RE2 does not backtrack: every rule runs on it, so a long line built to stall a backtracking engine
    finishes (the suite's timeout would stop an exponential scan) without a wall-clock bound here."""
    line = "api_key = " + "a-" * 50_000 + "!"

    gitleaks.scan_text("x.py", line)

    regexes = [rule.regex for rule in gitleaks.default_rules().rules if rule.regex is not None]
    assert regexes
    assert {type(regex).__module__ for regex in regexes} == {"re2"}


def test_shannon_entropy_counts_bytes_like_gitleaks() -> None:
    assert gitleaks.shannon_entropy("") == 0.0
    assert gitleaks.shannon_entropy("aaaa") == 0.0
    assert gitleaks.shannon_entropy("abcd") == pytest.approx(2.0)


def test_refresh_copies_the_rules_and_licence_with_the_upstream_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = tmp_path / "gitleaks"
    (upstream / "config").mkdir(parents=True)
    (upstream / "config" / "gitleaks.toml").write_text(
        "[[rules]]\nid = \"t\"\ndescription = \"t\"\nregex = '''t_[a-z]{8}'''\nkeywords = [\"t_\"]\n"
    )
    (upstream / "LICENSE").write_text("MIT License\n")
    env = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(upstream)], check=True)
    subprocess.run(["git", "-C", str(upstream), "add", "."], check=True)
    subprocess.run(["git", *env, "-C", str(upstream), "commit", "-qm", "rules"], check=True)
    target = tmp_path / "vendored"
    monkeypatch.setattr(gitleaks_refresh, "RULES_DIR", target)
    monkeypatch.setattr(gitleaks_refresh, "RULES_FILE", target / "gitleaks.toml")
    monkeypatch.setattr(gitleaks_refresh, "LICENSE_FILE", target / "LICENSE")
    monkeypatch.setattr(gitleaks, "RULES_FILE", target / "gitleaks.toml")

    assert gitleaks_refresh.refresh(upstream) == 0
    assert gitleaks_refresh.refresh(upstream, check_only=True) == 0
    commit = subprocess.run(
        ["git", "-C", str(upstream), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert gitleaks.load(target / "gitleaks.toml").commit == commit
    assert (target / "LICENSE").read_text() == "MIT License\n"
