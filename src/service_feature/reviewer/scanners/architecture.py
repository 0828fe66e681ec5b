"""Import rules a repository declares for itself, checked on the imports a patch adds.

The rules live in `.service-feature.yml` at the repository root:

    architecture:
      rules:
        - name: domain must not import infra   # required; quoted in the finding
          from: app/domain/**                  # required; a glob or a list of globs of the files it governs
          forbid: [app.infra, sqlalchemy]      # required; modules that those files must not import
          severity: high                       # optional: critical, high (default), medium, low, info

A forbidden module also forbids its submodules (`app.infra` forbids `app.infra.db`). Module names may be
written with `.`, `/` or `::`; they are compared in dotted form. The file is read from the base checkout when
there is one, so a patch cannot relax the rules it is judged by (the policy scanner flags such a change).

Imports are read with `ast` for Python (relative imports resolved against the file's package, a leading
`src/` dropped; `importlib.import_module("…")` and `__import__("…")` with a literal name count as imports,
and one with a computed name gets an info finding saying it could not be checked), and with a line regex
for JavaScript/TypeScript (`import`, `require`; a relative path becomes a path from the root,
`src/db/client`), Go (import specs) and Rust (`use`, `extern crate`). Source
files in other languages (Java, C#, Ruby, ...) that a rule governs get an info finding saying they were not
checked; other files cannot import. Only imports on lines the patch adds are reported.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from service_feature.diffs import FileChange
from service_feature.models import Finding, FindingCategory, Severity
from service_feature.reviewer.scanners.paths import matches, source_changes

CONFIG_FILE = ".service-feature.yml"
COMPUTED_IMPORT = "<computed>"  # stands for the module of `import_module(name)` when `name` is not a literal

_JS_SUFFIXES = (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx")
_LINE_IMPORTS: dict[str, re.Pattern[str]] = {
    suffix: re.compile(
        r"""(?:\bfrom\s*|^\s*import\s*|\brequire\(\s*|\bimport\(\s*)['"]([^'"]+)['"]""", re.MULTILINE
    )
    for suffix in _JS_SUFFIXES
}
# Source files whose imports no reader here understands: they get an info note. Other files cannot import.
_UNREAD_SOURCES = frozenset(
    {
        ".java",
        ".kt",
        ".kts",
        ".scala",
        ".cs",
        ".rb",
        ".php",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".swift",
        ".dart",
    }
)
_LINE_IMPORTS[".go"] = re.compile(r"""^\s*(?:import\s+)?(?:[\w.]+\s+)?"([^"\s]+)"\s*$""")
_LINE_IMPORTS[".rs"] = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:use\s+(?:::)?|extern\s+crate\s+)(\w+(?:::\w+)*)"
)


@dataclass(frozen=True)
class Rule:
    name: str
    sources: tuple[str, ...]
    forbid: tuple[str, ...]
    severity: Severity = Severity.high

    def forbidden(self, module: str) -> str | None:
        """The forbidden module that `module` is, or is inside of."""
        return next(
            (banned for banned in self.forbid if module == banned or module.startswith(banned + ".")), None
        )


class ConfigError(ValueError):
    """`.service-feature.yml` does not follow the schema in this module's docstring."""


def load_rules(root: Path) -> list[Rule]:
    """The rules of the repository checked out at `root`; none when it has no configuration file."""
    path = root / CONFIG_FILE
    if not path.is_file():
        return []
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{CONFIG_FILE} is not valid YAML: {error}") from error
    section = document.get("architecture") if isinstance(document, dict) else None
    if section is None:
        return []
    if not isinstance(section, dict) or not isinstance(section.get("rules", []), list):
        raise ConfigError(f"{CONFIG_FILE}: `architecture.rules` must be a list")
    return [_rule(number, raw) for number, raw in enumerate(section.get("rules", []), start=1)]


def scan(changes: Sequence[FileChange], patched_tree: Path, rules_tree: Path | None = None) -> list[Finding]:
    """Forbidden imports on added lines; `rules_tree` (the base checkout) holds the rules when given."""
    try:
        rules = load_rules(rules_tree or patched_tree)
    except ConfigError as error:
        return [_finding("architecture.config-invalid", Severity.medium, str(error), CONFIG_FILE)]
    findings: list[Finding] = []
    for change in source_changes(changes):
        governing = [rule for rule in rules if matches(change.path, rule.sources)]
        if not governing:
            continue
        suffix = posixpath.splitext(change.path)[1]
        if suffix in _UNREAD_SOURCES:
            message = f"the architecture rules are not checked in {suffix} files"
            findings.append(_finding("architecture.unchecked", Severity.info, message, change.path))
        if suffix not in (".py", ".pyi", *_LINE_IMPORTS):
            continue
        for line, modules in _added_imports(change, patched_tree):
            if COMPUTED_IMPORT in modules:
                message = "a module imported by a computed name: the architecture rules could not check it"
                finding = _finding("architecture.dynamic-import", Severity.info, message, change.path, line)
                findings.append(finding)
                continue
            for rule in governing:
                banned = next(((module, hit) for module in modules if (hit := rule.forbidden(module))), None)
                if banned:
                    message = f"rule '{rule.name}': imports {banned[0]}, and {banned[1]} is forbidden here"
                    findings.append(
                        _finding("architecture.forbidden-import", rule.severity, message, change.path, line)
                    )
    return findings


def _added_imports(change: FileChange, tree: Path) -> Iterator[tuple[int, list[str]]]:
    """Each import statement touched by added lines: its first added line and the modules it names."""
    added = change.added_numbers
    if change.path.endswith((".py", ".pyi")):
        try:
            source = (tree / change.path).read_text(encoding="utf-8")
            statements = list(_python_imports(change.path, source))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            return  # unreadable or not Python: bandit reports files it cannot parse
        for lines, modules in statements:
            if added.intersection(lines):
                yield min(added.intersection(lines)), modules
        return
    pattern = _LINE_IMPORTS[posixpath.splitext(change.path)[1]]
    for line in change.added:
        modules = [
            _dotted(_resolve_path(change.path, match.group(1))) for match in pattern.finditer(line.text)
        ]
        if modules:
            yield line.number, modules


def _python_imports(path: str, source: str) -> Iterator[tuple[range, list[str]]]:
    """Each import statement's lines (a parenthesised one spans several) and the modules it names."""
    package = _package_parts(path)
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            yield _lines(node), [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(package, node.level, node.module or "")
            yield _lines(node), [module, *(f"{module}.{alias.name}".strip(".") for alias in node.names)]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                dots = len(name.value) - len(name.value.lstrip("."))
                yield _lines(node), [_absolute(package, dots, name.value[dots:])]
            else:
                yield _lines(node), [COMPUTED_IMPORT]


def _is_dynamic_import(func: ast.expr) -> bool:
    """`importlib.import_module`, a bare `import_module` (from importlib) or `__import__`."""
    if isinstance(func, ast.Attribute):
        owner = func.value
        return func.attr == "import_module" and isinstance(owner, ast.Name) and owner.id == "importlib"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def _absolute(package: list[str], level: int, module: str) -> str:
    """`module` imported `level` packages up from `package` (0: absolute), in dotted form."""
    base = package[: len(package) - level + 1] if level else []
    return ".".join([*base, *module.split(".")]).strip(".")


def _lines(node: ast.stmt | ast.expr) -> range:
    return range(node.lineno, (node.end_lineno or node.lineno) + 1)


def _package_parts(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return parts[1:] if parts[:1] == ["src"] else parts


def _resolve_path(path: str, spec: str) -> str:
    if not spec.startswith("."):
        return spec
    return posixpath.normpath(posixpath.join(posixpath.dirname(path), spec))


def _dotted(module: str) -> str:
    return re.sub(r"::|/", ".", module).strip(".")


def _rule(number: int, raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{CONFIG_FILE}: architecture rule {number} must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{CONFIG_FILE}: architecture rule {number} needs a `name`")
    sources, forbid = _strings(raw, "from", name), _strings(raw, "forbid", name)
    try:
        severity = Severity(raw.get("severity", Severity.high.value))
    except ValueError as error:
        raise ConfigError(f"{CONFIG_FILE}: rule '{name}' has an unknown severity") from error
    return Rule(name.strip(), tuple(sources), tuple(_dotted(item) for item in forbid), severity)


def _strings(raw: dict[str, Any], key: str, name: str) -> list[str]:
    value = raw.get(key)
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{CONFIG_FILE}: rule '{name}' needs `{key}`: a string or a list of strings")
    return value


def _finding(rule_id: str, severity: Severity, message: str, path: str, line: int | None = None) -> Finding:
    return Finding(
        rule_id=rule_id,
        category=FindingCategory.architecture,
        severity=severity,
        message=message,
        file=path,
        line=line,
    )
