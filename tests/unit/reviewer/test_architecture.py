from __future__ import annotations

from pathlib import Path

import pytest

from service_feature.diffs import parse_diff
from service_feature.models import Finding, Severity
from service_feature.reviewer.scanners import architecture
from tests.support.review_corpus import Files, MakePatch

RULES = """\
architecture:
  rules:
    - name: domain must not import infra
      from: app/domain/**
      forbid: [app.infra, sqlalchemy]
"""
BASE: Files = {
    ".service-feature.yml": RULES,
    "app/__init__.py": "",
    "app/domain/__init__.py": "",
    "app/domain/order.py": "class Order:\n    pass\n",
    "app/infra/__init__.py": "",
    "app/infra/db.py": "def connect() -> None:\n    pass\n",
}


def scan(
    make_patch: MakePatch, patch: Files, base: Files = BASE, rules_from_base: bool = True
) -> list[Finding]:
    checkouts = make_patch(base, patch)
    rules_tree = checkouts.base if rules_from_base else None
    return architecture.scan(parse_diff(checkouts.diff), checkouts.patched, rules_tree)


def found(findings: list[Finding]) -> list[tuple[str, str | None, int | None]]:
    return [(f.rule_id, f.file, f.line) for f in findings]


@pytest.mark.parametrize(
    "source",
    [
        "from app.infra.db import connect\n",
        "import app.infra.db\n",
        "from app import infra\n",
        "from ..infra import db\n",
        "from .. import infra\n",
        "import sqlalchemy.orm as orm\n",
        "from sqlalchemy import (\n    select,\n)\n",
        'import importlib; db = importlib.import_module("app.infra.db")\n',
        'from importlib import import_module; db = import_module("..infra.db", __package__)\n',
        'orm = __import__("sqlalchemy.orm")\n',
    ],
)
def test_forbidden_imports_are_found(make_patch: MakePatch, source: str) -> None:
    findings = scan(make_patch, {"app/domain/order.py": source + "\n\nclass Order:\n    pass\n"})

    assert found(findings) == [("architecture.forbidden-import", "app/domain/order.py", 1)]
    assert findings[0].severity is Severity.high
    assert "domain must not import infra" in findings[0].message


@pytest.mark.parametrize(
    "source",
    [
        "from app.domain.order import Order\n",
        "import app.infrastructure_notes\n",
        "from . import order\n",
        "import sqlalchemyish\n",
        "import json\n",
        'import importlib; plugin = importlib.import_module("app.domain.plugins")\n',
    ],
)
def test_allowed_imports_pass(make_patch: MakePatch, source: str) -> None:
    assert scan(make_patch, {"app/domain/totals.py": source}) == []


def test_files_outside_the_rule_may_import_anything(make_patch: MakePatch) -> None:
    assert scan(make_patch, {"app/infra/repo.py": "import sqlalchemy\nfrom app.infra import db\n"}) == []


def test_an_import_the_base_already_had_is_not_blamed(make_patch: MakePatch) -> None:
    base = {**BASE, "app/domain/order.py": "from app.infra import db\n\n\nclass Order:\n    pass\n"}
    patch = {"app/domain/order.py": "from app.infra import db\n\n\nclass Order:\n    total = 0\n"}

    assert scan(make_patch, patch, base) == []


def test_one_name_added_to_a_parenthesised_import_is_found(make_patch: MakePatch) -> None:
    rules = "architecture:\n  rules:\n    - {name: n, from: 'a/**', forbid: [sqlalchemy.insert]}\n"
    base = {".service-feature.yml": rules, "a/x.py": "from sqlalchemy import (\n    select,\n)\n"}
    patch = {"a/x.py": "from sqlalchemy import (\n    select,\n    insert,\n)\n"}

    assert found(scan(make_patch, patch, base)) == [("architecture.forbidden-import", "a/x.py", 3)]


def test_rules_come_from_the_base_so_a_patch_cannot_relax_them(make_patch: MakePatch) -> None:
    patch = {
        ".service-feature.yml": "architecture:\n  rules: []\n",
        "app/domain/order.py": "import app.infra\n",
    }

    assert len(scan(make_patch, patch)) == 1
    assert scan(make_patch, patch, rules_from_base=False) == []


@pytest.mark.parametrize(
    ("path", "source", "forbid"),
    [
        ("web/ui/page.ts", 'import { query } from "../db/client";\n', "web/db"),
        ("web/ui/page.js", 'const pg = require("pg");\n', "pg"),
        (
            "svc/ui/page.go",
            'import (\n\t"fmt"\n\tdb "example.com/shop/svc/db"\n)\n',
            "example.com/shop/svc/db",
        ),
        ("src/ui/page.rs", "use crate::db::pool;\n", "crate::db"),
    ],
)
def test_other_languages_by_import_lines(make_patch: MakePatch, path: str, source: str, forbid: str) -> None:
    rules = f"architecture:\n  rules:\n    - {{name: no db in ui, from: '*/ui/**', forbid: ['{forbid}']}}\n"

    findings = scan(make_patch, {path: source}, {".service-feature.yml": rules})

    assert [f.rule_id for f in findings] == ["architecture.forbidden-import"]


def test_languages_without_an_import_reader_get_an_info_note(make_patch: MakePatch) -> None:
    findings = scan(make_patch, {"app/domain/Order.java": "import app.infra.Db;\n"})

    assert [(f.rule_id, f.severity) for f in findings] == [("architecture.unchecked", Severity.info)]


def test_an_import_by_a_computed_name_is_noted_as_unchecked(make_patch: MakePatch) -> None:
    source = "import importlib\n\n\ndef load(name: str) -> object:\n"
    source += '    return importlib.import_module(f"app.{name}")\n'

    findings = scan(make_patch, {"app/domain/loader.py": source})

    assert [(f.rule_id, f.severity, f.line) for f in findings] == [
        ("architecture.dynamic-import", Severity.info, 5)
    ]


def test_severity_is_configurable(make_patch: MakePatch) -> None:
    rules = "architecture:\n  rules:\n    - {name: n, from: 'a/**', forbid: b, severity: critical}\n"

    findings = scan(make_patch, {"a/x.py": "import b.c\n"}, {".service-feature.yml": rules})

    assert [(f.rule_id, f.severity) for f in findings] == [
        ("architecture.forbidden-import", Severity.critical)
    ]


@pytest.mark.parametrize(
    "config",
    [
        "architecture: [",
        "architecture:\n  rules: {name: x}\n",
        "architecture:\n  rules:\n    - just a string\n",
        "architecture:\n  rules:\n    - {from: 'a/**', forbid: [b]}\n",
        "architecture:\n  rules:\n    - {name: n, forbid: [b]}\n",
        "architecture:\n  rules:\n    - {name: n, from: 'a/**', forbid: []}\n",
        "architecture:\n  rules:\n    - {name: n, from: 'a/**', forbid: [b], severity: dire}\n",
    ],
)
def test_an_invalid_configuration_is_a_finding(make_patch: MakePatch, config: str) -> None:
    findings = scan(make_patch, {"a/x.py": "import b\n"}, {".service-feature.yml": config})

    assert [(f.rule_id, f.severity) for f in findings] == [("architecture.config-invalid", Severity.medium)]


def test_no_configuration_means_no_rules(tmp_path: Path) -> None:
    assert architecture.load_rules(tmp_path) == []
    (tmp_path / ".service-feature.yml").write_text("other: {}\n")
    assert architecture.load_rules(tmp_path) == []


def test_files_that_cannot_import_are_skipped_silently(make_patch: MakePatch) -> None:
    assert scan(make_patch, {"app/domain/README.md": "import app.infra\n"}) == []
