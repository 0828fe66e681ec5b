"""Refresh the vendored gitleaks rule set from a gitleaks checkout.

    .venv/bin/python -m service_feature.reviewer.gitleaks_refresh /path/to/gitleaks [--check]

Copies `config/gitleaks.toml` and `LICENSE` of the checkout's HEAD into `reviewer/rules/gitleaks/`, with a
header naming the upstream commit, and checks that every regex still compiles with RE2 (the engine the
secrets scanner uses). `--check` only reports whether the vendored file is the checkout's. The rule data is
gitleaks' (MIT); the header keeps its licence notice with it, as the licence asks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

RULES_DIR = Path(__file__).resolve().parent / "rules" / "gitleaks"
RULES_FILE = RULES_DIR / "gitleaks.toml"
LICENSE_FILE = RULES_DIR / "LICENSE"
_UPSTREAM = "https://github.com/gitleaks/gitleaks"


def header(commit: str, date: str) -> str:
    return (
        f"# Vendored from {_UPSTREAM} (config/gitleaks.toml), commit {commit} ({date}).\n"
        "# Copyright (c) 2019 Zachary Rice. MIT License: see LICENSE beside this file.\n"
        "# Refreshed with `python -m service_feature.reviewer.gitleaks_refresh <gitleaks checkout>`;\n"
        "# not edited by hand (the secrets scanner's own adjustments live in scanners/secrets.py).\n"
        f"# upstream-commit = {commit}\n\n"
    )


def upstream_commit(text: str) -> str | None:
    """The commit a vendored file was taken from, from its header."""
    for line in text.splitlines()[:10]:
        if line.startswith("# upstream-commit = "):
            return line.split("=", 1)[1].strip()
    return None


def _git(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=True
    ).stdout


def refresh(checkout: Path, check_only: bool = False) -> int:
    commit = _git(checkout, "rev-parse", "HEAD").strip()
    if check_only:
        current = upstream_commit(RULES_FILE.read_text(encoding="utf-8"))
        print(f"vendored {current}, checkout {commit}: {'same' if current == commit else 'differs'}")
        return 0 if current == commit else 1
    date = _git(checkout, "show", "-s", "--format=%cs", "HEAD").strip()
    rules = _git(checkout, "show", "HEAD:config/gitleaks.toml")
    licence = _git(checkout, "show", "HEAD:LICENSE")
    RULES_DIR.mkdir(parents=True, exist_ok=True)
    RULES_FILE.write_text(header(commit, date) + rules, encoding="utf-8")
    LICENSE_FILE.write_text(licence, encoding="utf-8")
    from service_feature.reviewer.scanners import gitleaks  # after writing: it loads the new file

    ruleset = gitleaks.load(RULES_FILE)
    print(f"gitleaks {commit[:12]}: {len(ruleset.rules)} rules, {len(ruleset.skipped)} skipped")
    for rule_id, error in ruleset.skipped:
        print(f"  skipped {rule_id}: {error}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a git checkout of gitleaks")
    parser.add_argument("--check", action="store_true", help="only compare the vendored commit")
    args = parser.parse_args()
    sys.exit(refresh(args.checkout, args.check))


if __name__ == "__main__":
    main()
