"""What a Python repository declares about testing it, read statically from its dependency files: which
Pythons it accepts, where its test dependencies are, which pytest plugins its configuration needs, and from
all that the install plan for its environment. Pure: file contents in, plan out; nothing here runs the
project's code (a setup.py is parsed, never executed, since the executor's host must not run it).

Test dependencies are taken from the first of these that declares any, the most explicit first (mixing
sources invites conflicting pins): PEP 735 `[dependency-groups]`, `[project.optional-dependencies]` extras,
setup.cfg `[options.extras_require]`, setup.py `extras_require`, requirements files with test/dev-like
names (root, `requirements/`), tox's testenv `deps`, Hatch's test/default environment, PDM's
dev-dependencies, Poetry's test/dev groups. Within one source, test-like names win over dev-like ones. A root
`requirements.txt` (the runtime dependencies of a project that is not a package) is always installed.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from service_feature.executor.interpreters import PythonRequirement

Files = Mapping[str, bytes]

# Files (repository-relative; `*` stays within one directory) whose contents decide the environment.
DEPENDENCY_PATTERNS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "tox.ini",
    "tox.toml",
    "pytest.ini",
    ".pytest.ini",
    "*requirements*.txt",
    "requirements/*.txt",
    "requirements/*/*.txt",
    "tests/requirements*.txt",
    "test/requirements*.txt",
    "testing/requirements*.txt",
)
TEST_NAMES = frozenset({"test", "tests", "testing", "unittest", "unittests", "pytest"})
DEV_NAMES = frozenset({"dev", "devel", "develop", "development"})
_NOT_PURE_BACKENDS = ("maturin", "scikit_build", "mesonpy", "setuptools_rust", "pybind11", "cmake")
_NOT_PURE_SETUP_PY = ("ext_modules", "Extension(", "cythonize", "cffi_modules", "rust_extensions")
# pip's per-requirement build options, which uv refuses in a requirements file (it takes `--hash`).
_REFUSED_OPTION = re.compile(
    r"\s+--(?:config-settings?|global-option|install-option|build-option)(?:=|\s+)\S+"
)
_HASH_OPTION = re.compile(r"\s+--hash(?:=|\s+)\S+")
_REQUIREMENTS_OPTION = re.compile(r"^(-[rce]|--requirement|--constraint|--editable|--?[\w-]+)(?:=|\s*)(\S*)")
_CLASSIFIER = re.compile(r"Programming Language :: Python :: (\d+\.\d+)\s*$")
_TOX_FACTOR = re.compile(r"^[\w.,!{}\-]+\s*:\s+")


@dataclass(frozen=True)
class TestDependencies:
    """Test dependencies from one source: `uv pip install` arguments, and extras of the project itself."""

    __test__ = False  # not a pytest class

    arguments: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    source: str = ""
    notes: tuple[str, ...] = ()  # what was left out of the declaration, and why


@dataclass(frozen=True)
class InstallPlan:
    """What goes into a project's environment. `arguments` are `uv pip install`'s (requirement strings and
    `-r file`), the project itself comes last, editable, with `extras`; `fallback` is what to install
    instead when building the project fails but its tests can still run from the checkout."""

    arguments: tuple[str, ...]
    editable: bool
    extras: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    fallback: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()
    # What the project's extras provide, as importable names (the extras' own names and their requirements'
    # distribution names, `-` as `_`): a test that cannot import one of them needs the extras.
    extra_modules: frozenset[str] = frozenset()

    def project_argument(self) -> tuple[str, ...]:
        if not self.editable:
            return ()
        return ("-e", f".[{','.join(self.extras)}]" if self.extras else ".")

    def install_arguments(self) -> tuple[str, ...]:
        return (*self.arguments, *self.project_argument())

    @property
    def empty(self) -> bool:
        """Nothing but pytest: environments of such projects are all alike and shared."""
        return not self.editable and self.arguments == ("pytest",)


@dataclass
class _Project:
    """The parsed dependency files."""

    files: Files
    pyproject: dict[str, Any] = field(default_factory=dict)
    setup_cfg: configparser.ConfigParser = field(default_factory=lambda: _ini(b""))
    setup_py: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, files: Files) -> _Project:
        return cls(
            files,
            _toml(files.get("pyproject.toml", b"")),
            _ini(files.get("setup.cfg", b"")),
            _setup_keywords(files.get("setup.py", b"")),
        )

    def table(self, *keys: str) -> Any:
        value: Any = self.pyproject
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value


# -- the plan --------------------------------------------------------------------------------------------


def install_plan(files: Files, *, all_extras: bool = False) -> InstallPlan:
    """The plan; `all_extras`: every extra of the project's besides the test ones (a suite that imports
    what each extra provides, as tox's `pdm sync -G :all` would install)."""
    project = _Project.read(files)
    tests = find_test_dependencies(files)
    if all_extras:
        everything = tuple(dict.fromkeys((*tests.extras, *_extras_table(project))))
        note = f"every extra installed ({', '.join(everything)}): the base's tests import what they provide"
        tests = dataclasses.replace(tests, extras=everything, notes=(*tests.notes, note))
    runtime = ("-r", "requirements.txt") if "requirements.txt" in files else ()
    plugins = tuple(required_pytest_plugins(files))
    arguments = ("pytest", *plugins, *tests.arguments, *runtime)
    editable = _installable(project)
    if not editable:  # extras of a project that cannot be installed: their requirements, directly
        arguments += tuple(_extra_requirements(project, tests.extras))
    extras = tests.extras if editable else ()
    fallback = _fallback(project, arguments, extras) if editable else None
    sources = (tests.source,) if tests.source else ()
    modules = _extra_modules(project)
    return InstallPlan(_unique(arguments), editable, extras, sources, plugins, fallback, tests.notes, modules)


def _extra_modules(project: _Project) -> frozenset[str]:
    """The names the extras' modules are likely imported by: the extras' own names, and each requirement's
    name, its first word and its name without a `py`/`python-` prefix, as distributions are usually
    named after what they provide (`railroad-diagrams` → `railroad`, `PyYAML` → `yaml`)."""
    names: set[str] = set()
    for extra, requirements in _extras_table(project).items():
        names.add(canonicalize_name(extra).replace("-", "_"))
        for requirement in _requirement_strings(requirements):
            name = canonicalize_name(Requirement(requirement).name)
            unprefixed = re.sub(r"^(python-|py-?)", "", name)
            names |= {n.replace("-", "_") for n in (name, name.split("-")[0], unprefixed) if n}
    return frozenset(names)


def _fallback(
    project: _Project, arguments: tuple[str, ...], extras: tuple[str, ...]
) -> tuple[str, ...] | None:
    """What to install when the project itself fails to build: everything else, plus the requirements it
    declares statically; only for a project whose tests can then import it from the checkout."""
    if not _testable_from_checkout(project):
        return None
    return _unique((*arguments, *_declared_requirements(project), *_extra_requirements(project, extras)))


def _unique(arguments: Iterable[str]) -> tuple[str, ...]:
    """The arguments with repeated requirements (or `-r file` pairs) dropped, the first kept."""
    items: list[tuple[str, ...]] = []
    pending: str | None = None
    for argument in arguments:
        if pending is not None:
            items.append((pending, argument))
            pending = None
        elif argument in ("-r", "-c", "-e"):
            pending = argument
        else:
            items.append((argument,))
    return tuple(part for item in dict.fromkeys(items) for part in item)


def _installable(project: _Project) -> bool:
    """Something pip can build: setup.py, a [project] table, a build backend, or setup.cfg metadata."""
    return (
        "setup.py" in project.files
        or isinstance(project.table("project"), dict)
        or bool(project.table("build-system", "build-backend"))
        or project.setup_cfg.has_option("metadata", "name")
    )


def _testable_from_checkout(project: _Project) -> bool:
    """Whether the tests can import the code from the checkout if the project fails to build: pure Python
    in a flat layout (a src layout or compiled extensions need the build)."""
    backend = str(project.table("build-system", "build-backend") or "")
    requires = " ".join(map(str, project.table("build-system", "requires") or []))
    setup_py = project.files.get("setup.py", b"").decode(errors="replace")
    if any(marker in f"{backend} {requires}".replace("-", "_") for marker in _NOT_PURE_BACKENDS):
        return False
    return not any(marker in setup_py for marker in _NOT_PURE_SETUP_PY) and not _src_layout(project)


def _src_layout(project: _Project) -> bool:
    """Whether the packages live under src/, as any of the usual build configurations says."""
    declared = [
        project.setup_py.get("package_dir"),
        _cfg_value(project.setup_cfg, "options", "package_dir"),
        _cfg_value(project.setup_cfg, "options.packages.find", "where"),
        project.table("tool", "setuptools", "package-dir"),
        project.table("tool", "setuptools", "packages", "find", "where"),
        project.table("tool", "hatch", "build", "targets", "wheel", "packages"),
        project.table("tool", "poetry", "packages"),
    ]
    return any(re.search(r"\bsrc\b", str(value)) for value in declared if value)


def _declared_requirements(project: _Project) -> Iterator[str]:
    """The project's runtime dependencies as far as they are declared statically."""
    yield from _requirement_strings(project.table("project", "dependencies") or [])
    yield from _requirement_strings(_cfg_list(project.setup_cfg, "options", "install_requires"))
    yield from _requirement_strings(project.setup_py.get("install_requires") or [])


def _extra_requirements(project: _Project, extras: Iterable[str]) -> Iterator[str]:
    for extra in extras:
        yield from _requirement_strings(_extras_table(project).get(extra, []))


def _extras_table(project: _Project) -> dict[str, list[str]]:
    extras: dict[str, list[str]] = {}
    if project.setup_cfg.has_section("options.extras_require"):
        for name in project.setup_cfg.options("options.extras_require"):
            extras[name] = _cfg_list(project.setup_cfg, "options.extras_require", name)
    setup_py = project.setup_py.get("extras_require")
    if isinstance(setup_py, dict):
        extras |= {str(k): _as_list(v) for k, v in setup_py.items()}
    optional = project.table("project", "optional-dependencies")
    if isinstance(optional, dict):
        extras |= {str(k): _as_list(v) for k, v in optional.items()}
    return extras


# -- requires-python -------------------------------------------------------------------------------------


def python_requirement(files: Files) -> PythonRequirement:
    """The Pythons the project accepts: requires-python from wherever it is declared, and classifiers."""
    project = _Project.read(files)
    declared = [
        (project.table("project", "requires-python"), "pyproject.toml [project]"),
        (_cfg_value(project.setup_cfg, "options", "python_requires"), "setup.cfg"),
        (project.setup_py.get("python_requires"), "setup.py"),
        (_poetry_python(project), "pyproject.toml [tool.poetry]"),
    ]
    classifiers = _classifier_versions(project)
    for value, source in declared:
        specifier = _specifier(value)
        if specifier is not None:
            return PythonRequirement(specifier, classifiers, source)
    return PythonRequirement(None, classifiers, "")


def _classifier_versions(project: _Project) -> frozenset[str]:
    listed = [
        *_as_list(project.table("project", "classifiers")),
        *_cfg_list(project.setup_cfg, "metadata", "classifiers"),
        *_as_list(project.setup_py.get("classifiers")),
        *_as_list(project.table("tool", "poetry", "classifiers")),
    ]
    return frozenset(m.group(1) for c in listed if (m := _CLASSIFIER.match(str(c).strip())))


def _poetry_python(project: _Project) -> str | None:
    value = project.table("tool", "poetry", "dependencies", "python")
    return _poetry_version(value) if isinstance(value, str) else None


def _specifier(value: object) -> SpecifierSet | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return SpecifierSet(value.strip())
    except InvalidSpecifier:
        return None


# -- test dependencies -----------------------------------------------------------------------------------


def find_test_dependencies(files: Files) -> TestDependencies:
    """The test dependencies from the most trusted source that declares any (see the module docstring)."""
    project = _Project.read(files)
    notes: tuple[str, ...] = ()  # of sources that came to nothing (their one file was missing)
    for source in _SOURCES:
        found = source(project)
        if found is not None and (found.arguments or found.extras):
            return dataclasses.replace(found, notes=(*notes, *found.notes))
        notes += found.notes if found is not None else ()
    return TestDependencies(notes=notes)


def _pick(names: Iterable[str]) -> list[str]:
    """The test-like names, else the dev-like ones, in their declared order."""
    names = list(names)
    for wanted in (TEST_NAMES, DEV_NAMES):
        picked = [n for n in names if _name_words(n) & wanted]
        if picked:
            return picked
    return []


def _name_words(name: str) -> set[str]:
    return set(re.split(r"[-_.\s]+", name.lower()))


def _from_dependency_groups(project: _Project) -> TestDependencies | None:
    groups = project.table("dependency-groups")
    if not isinstance(groups, dict):
        return None
    by_name: dict[str, Any] = {canonicalize_name(str(name)): value for name, value in groups.items()}
    picked = _pick(by_name)
    requirements = [r for name in picked for r in _group_requirements(by_name, name, frozenset())]
    source = f"pyproject.toml [dependency-groups] {', '.join(picked)}"
    return TestDependencies(tuple(_requirement_strings(requirements)), (), source)


def _group_requirements(groups: Mapping[str, Any], name: str, seen: frozenset[str]) -> Iterator[str]:
    """A PEP 735 group's requirements, `include-group`s expanded (a cycle is cut, not followed)."""
    for item in _as_list(groups.get(name)):
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict) and "include-group" in item:
            included = canonicalize_name(str(item["include-group"]))
            if included not in seen | {name}:
                yield from _group_requirements(groups, included, seen | {name})


def _from_project_extras(project: _Project) -> TestDependencies | None:
    optional = project.table("project", "optional-dependencies")
    return _extras_source(optional, "pyproject.toml [project.optional-dependencies]")


def _from_setup_cfg_extras(project: _Project) -> TestDependencies | None:
    if not project.setup_cfg.has_section("options.extras_require"):
        return None
    names = project.setup_cfg.options("options.extras_require")
    return _extras_source(dict.fromkeys(names), "setup.cfg [options.extras_require]")


def _from_setup_py_extras(project: _Project) -> TestDependencies | None:
    return _extras_source(project.setup_py.get("extras_require"), "setup.py extras_require")


def _extras_source(extras: object, source: str) -> TestDependencies | None:
    if not isinstance(extras, dict):
        return None
    picked = _pick(str(name) for name in extras)
    return TestDependencies((), tuple(picked), f"{source} {', '.join(picked)}")


def _from_requirement_files(project: _Project) -> TestDependencies | None:
    """`requirements-test.txt`, `test-requirements.txt`, else `requirements/dev.txt`, else deeper ones: the
    first level that has any wins (deeper ones are often for one old Python: `requirements/3.3/…`)."""
    names = sorted(name for name in project.files if _is_requirements_file(name))
    for depth in sorted({name.count("/") for name in names}):
        picked = _pick_files([name for name in names if name.count("/") == depth])
        if picked:
            arguments: list[str] = []
            notes: list[str] = []
            for name in picked:
                arguments += _requirements_file(name, project.files, notes, frozenset())
            return TestDependencies(tuple(arguments), (), ", ".join(picked), tuple(notes))
    return None


def _requirements_file(name: str, files: Files, notes: list[str], seen: frozenset[str]) -> list[str]:
    """`-r name`, unless uv would refuse the file (or one it includes): pip's per-requirement build options
    (`-e . --config-settings=…`, `--install-option`) are not uv's. Then its lines, those options left
    out (noted), as arguments: requirements, `-c` files, included files the same way; `-e` of the
    project itself is dropped (the project is installed editable anyway), other option lines too."""
    if not _refused_by_uv(name, files, seen):
        return ["-r", name]
    arguments: list[str] = []
    for line in _requirement_lines(files.get(name, b"")):
        stripped = _REFUSED_OPTION.sub("", line).strip()
        if stripped != line.strip():
            notes.append(f"{name}: left out what uv does not take, from `{line.strip()}`")
        option = _REQUIREMENTS_OPTION.match(stripped)
        if option is None:
            arguments += _requirement_strings([_HASH_OPTION.sub("", stripped)])
            continue
        flag, value = option.group(1), _relative_to(name, option.group(2))
        if flag in ("-r", "--requirement"):
            arguments += _requirements_file(value, files, notes, seen | {name})
        elif flag in ("-c", "--constraint"):
            arguments += ["-c", value]
        elif flag in ("-e", "--editable") and option.group(2).rstrip("/") not in (".", ".."):
            arguments += ["-e", option.group(2)]
    return arguments


def _refused_by_uv(name: str, files: Files, seen: frozenset[str]) -> bool:
    if name in seen or name not in files:
        return False
    for line in _requirement_lines(files[name]):
        if _REFUSED_OPTION.search(line):
            return True
        option = _REQUIREMENTS_OPTION.match(line.strip())
        included = option.group(2) if option and option.group(1) in ("-r", "--requirement") else None
        if included and _refused_by_uv(_relative_to(name, included), files, seen | {name}):
            return True
    return False


def _requirement_lines(content: bytes) -> list[str]:
    """A requirements file's logical lines: continuations joined, comments and blank lines dropped."""
    text = content.decode(errors="replace").replace("\\\n", " ")
    lines = (re.sub(r"(^|\s)#.*", "", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


def _relative_to(requirements_file: str, path: str) -> str:
    """A path a requirements file names (`-r ci.txt` in `requirements/dev.txt`), from the repository root
    as pip reads included files: relative to the including file."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(requirements_file), path))


def _is_requirements_file(name: str) -> bool:
    path = PurePosixPath(name)
    return path.suffix == ".txt" and ("requirements" in path.name or path.parts[0] == "requirements")


def _pick_files(names: list[str]) -> list[str]:
    """Test-like names (the file's, or its directory's under requirements/), else dev-like ones."""
    words = {name: _name_words(PurePosixPath(name).stem) | _name_words(_subdirectory(name)) for name in names}
    for wanted in (TEST_NAMES, DEV_NAMES):
        picked = [name for name in names if words[name] & wanted]
        if picked:
            return picked
    return []


def _subdirectory(name: str) -> str:
    """The directory a nested file is in: `tests/requirements.txt` is a test requirements file."""
    parts = PurePosixPath(name).parts
    return parts[-2] if len(parts) > 1 else ""


def _from_tox(project: _Project) -> TestDependencies | None:
    tox_ini = project.files.get("tox.ini")
    legacy = project.table("tool", "tox", "legacy_tox_ini")
    for content, source in ((tox_ini, "tox.ini"), (legacy, "pyproject.toml [tool.tox]")):
        if content is not None:
            raw = content if isinstance(content, bytes) else str(content).encode()
            found = _tox_ini_deps(_ini(raw), source, project.files)
            if found is not None:
                return found
    toml_tables = [project.table("tool", "tox", "env_run_base"), _toml(project.files.get("tox.toml", b""))]
    for table in toml_tables:
        base = table.get("env_run_base", table) if isinstance(table, dict) else None
        if isinstance(base, dict) and (base.get("deps") or base.get("extras")):
            deps = [str(d) for d in _as_list(base.get("deps"))]
            extras = [str(e) for e in _as_list(base.get("extras"))]
            return _tox_lines(deps, extras, "tox env_run_base", project.files)
    return None


def _tox_ini_deps(ini: configparser.ConfigParser, source: str, files: Files) -> TestDependencies | None:
    sections = [s for s in ("testenv", "testenv:py", "testenv:test", "testenv:tests") if ini.has_section(s)]
    sections += [s for s in ini.sections() if re.fullmatch(r"testenv:py3\d*", s)]
    for section in sections:
        deps = _cfg_list(ini, section, "deps")
        extras = _cfg_list(ini, section, "extras")
        if deps or extras:
            return _tox_lines(deps, extras, f"{source} [{section}]", files)
    return None


def _tox_lines(deps: list[str], extras: list[str], source: str, files: Files) -> TestDependencies:
    """tox `deps`: `{toxinidir}/` made relative (tox.ini is at the root), factor-conditional and other
    substituted lines skipped (they depend on the environment tox would run), `.[extra]` made extras. A
    `-r`/`-c` file that would be among the dependency files but is not (an sdist that left it out) is
    skipped with a note rather than failing setup."""
    arguments: list[str] = []
    notes: list[str] = []
    extras = [e for e in extras if "{" not in e]
    for line in deps:
        line = line.replace("{toxinidir}/", "").replace("{toxinidir}", ".").strip()
        if not line or "{" in line or _TOX_FACTOR.match(line):
            continue
        option = re.match(r"^(-[rc])\s*(\S+)$", line)
        project_itself = re.match(r"^(?:-e\s*)?\.(?:\[([^\]]*)\])?$", line)
        if option and _missing_dependency_file(posixpath.normpath(option.group(2)), files):
            notes.append(f"{source}: `{line}` names a file the repository does not have; skipped")
        elif option:
            arguments += [option.group(1), option.group(2)]
        elif project_itself:
            extras += [e.strip() for e in (project_itself.group(1) or "").split(",") if e.strip()]
        else:
            arguments += _requirement_strings([line])
    return TestDependencies(tuple(arguments), tuple(extras), source, tuple(notes))


def _missing_dependency_file(name: str, files: Files) -> bool:
    """Whether `name` is absent for sure: the files read are all those the patterns match, so a name the
    patterns match that is not among them is not in the repository (others were not looked for)."""
    parts = PurePosixPath(name).parts
    matches = any(
        len(parts) == len(wanted) and all(fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))
        for wanted in (PurePosixPath(pattern).parts for pattern in DEPENDENCY_PATTERNS)
    )
    return matches and name not in files


def _from_hatch(project: _Project) -> TestDependencies | None:
    environments = project.table("tool", "hatch", "envs")
    if not isinstance(environments, dict):
        return None
    for name in (*_pick(environments), "default"):
        environment = environments.get(name)
        if isinstance(environment, dict):
            requirements = [
                *_as_list(environment.get("dependencies")),
                *_as_list(environment.get("extra-dependencies")),
            ]
            features = tuple(str(f) for f in _as_list(environment.get("features")))
            found = TestDependencies(
                tuple(_requirement_strings(requirements)),
                features,
                f"pyproject.toml [tool.hatch.envs.{name}]",
            )
            if found.arguments or found.extras:
                return found
    return None


def _from_pdm(project: _Project) -> TestDependencies | None:
    groups = project.table("tool", "pdm", "dev-dependencies")
    if not isinstance(groups, dict):
        return None
    picked = _pick(groups)
    requirements = [r for name in picked for r in _as_list(groups[name]) if "${" not in str(r)]
    source = f"pyproject.toml [tool.pdm.dev-dependencies] {', '.join(picked)}"
    return TestDependencies(tuple(_requirement_strings(requirements)), (), source)


def _from_poetry(project: _Project) -> TestDependencies | None:
    poetry = project.table("tool", "poetry")
    if not isinstance(poetry, dict):
        return None
    declared = poetry.get("group")
    groups = {
        str(name): group["dependencies"]
        for name, group in (declared.items() if isinstance(declared, dict) else [])
        if isinstance(group, dict) and isinstance(group.get("dependencies"), dict)
    }
    if isinstance(poetry.get("dev-dependencies"), dict):
        groups.setdefault("dev", poetry["dev-dependencies"])
    picked = _pick(groups)
    requirements = [
        requirement
        for name in picked
        for package, constraint in groups[name].items()
        if (requirement := _poetry_requirement(str(package), constraint)) is not None
    ]
    source = f"pyproject.toml [tool.poetry] {', '.join(picked)}"
    return TestDependencies(tuple(_requirement_strings(requirements)), (), source)


def _poetry_requirement(package: str, constraint: object) -> str | None:
    """Poetry's `name = "^1.2"` / `{version = …, extras = […]}` as PEP 508, roughly (caret and tilde keep
    their lower bound only: a looser range resolves where the exact one would)."""
    if package.lower() == "python":
        return None
    extras: list[str] = []
    if isinstance(constraint, dict):
        if any(key in constraint for key in ("path", "git", "url", "file")):
            return None
        extras = [str(e) for e in _as_list(constraint.get("extras"))]
        constraint = constraint.get("version", "*")
    version = _poetry_version(constraint) if isinstance(constraint, str) else ""
    return f"{package}{'[' + ','.join(extras) + ']' if extras else ''}{version or ''}"


def _poetry_version(constraint: str) -> str | None:
    parts = []
    for part in (p.strip() for p in constraint.split(",")):
        if part in ("", "*"):
            continue
        if part[0] in "^~" and not part.startswith("~="):
            part = ">=" + part.lstrip("^~").strip()
        elif part[0].isdigit():
            part = "==" + part
        parts.append(part)
    joined = ",".join(parts)
    return joined if _specifier(joined) is not None else None


_SOURCES: tuple[Callable[[_Project], TestDependencies | None], ...] = (
    _from_dependency_groups,
    _from_project_extras,
    _from_setup_cfg_extras,
    _from_setup_py_extras,
    _from_requirement_files,
    _from_tox,
    _from_hatch,
    _from_pdm,
    _from_poetry,
)


# -- pytest configuration --------------------------------------------------------------------------------

# Options in `addopts` that only a plugin understands (pytest stops with a usage error without it).
_OPTION_PLUGINS = {
    "--cov": "pytest-cov",
    "--no-cov": "pytest-cov",
    "-n": "pytest-xdist",
    "--numprocesses": "pytest-xdist",
    "--dist": "pytest-xdist",
    "--maxprocesses": "pytest-xdist",
    "--timeout": "pytest-timeout",
    "--benchmark": "pytest-benchmark",
    "--reruns": "pytest-rerunfailures",
    "--only-rerun": "pytest-rerunfailures",
    "--randomly": "pytest-randomly",
    "--random-order": "pytest-random-order",
    "--html": "pytest-html",
    "--asyncio-mode": "pytest-asyncio",
    "--ds": "pytest-django",
    "--reuse-db": "pytest-django",
    "--mypy": "pytest-mypy",
    "--flake8": "pytest-flake8",
    "--black": "pytest-black",
    "--mpl": "pytest-mpl",
    "--hypothesis": "hypothesis",
    "--record-mode": "pytest-recording",
    "--instafail": "pytest-instafail",
    "--forked": "pytest-forked",
    "--snapshot-update": "syrupy",
    "--doctest-plus": "pytest-doctestplus",
    "--remote-data": "pytest-remotedata",
}
# `-p name` module names → distributions.
_MODULE_PLUGINS = {
    "xdist": "pytest-xdist",
    "pytest_cov": "pytest-cov",
    "pytest_mock": "pytest-mock",
    "pytest_asyncio": "pytest-asyncio",
    "asyncio": "pytest-asyncio",
    "pytest_timeout": "pytest-timeout",
    "timeout": "pytest-timeout",
    "randomly": "pytest-randomly",
    "pytest_randomly": "pytest-randomly",
    "anyio": "anyio",
    "trio": "pytest-trio",
    "pytest_benchmark": "pytest-benchmark",
    "rerunfailures": "pytest-rerunfailures",
    "pytest_django": "pytest-django",
}
# Settings only a plugin reads; without it async tests or Django tests cannot run.
_SETTING_PLUGINS = {
    "asyncio_mode": "pytest-asyncio",
    "asyncio_default_fixture_loop_scope": "pytest-asyncio",
    "timeout": "pytest-timeout",
    "DJANGO_SETTINGS_MODULE": "pytest-django",
    "env": "pytest-env",
    "mock_use_standalone_module": "pytest-mock",
    "trio_mode": "pytest-trio",
}


def pytest_settings(files: Files) -> dict[str, Any]:
    """pytest's settings from the first file it would read them from (its own order)."""
    candidates: list[tuple[str, Callable[[], dict[str, Any] | None]]] = [
        ("pytest.ini", lambda: _ini_section(files["pytest.ini"], "pytest", required=False)),
        (".pytest.ini", lambda: _ini_section(files[".pytest.ini"], "pytest", required=False)),
        ("pyproject.toml", lambda: _pyproject_pytest(files["pyproject.toml"])),
        ("tox.ini", lambda: _ini_section(files["tox.ini"], "pytest")),
        ("setup.cfg", lambda: _ini_section(files["setup.cfg"], "tool:pytest")),
    ]
    for name, read in candidates:
        if name in files and (settings := read()) is not None:
            return settings
    return {}


def required_pytest_plugins(files: Files) -> list[str]:
    """The plugins the project's pytest settings need: from `addopts` options and `-p`, `required_plugins`
    and plugin-only settings, each once."""
    settings = pytest_settings(files)
    addopts = settings.get("addopts", "")
    tokens = addopts if isinstance(addopts, list) else _split(str(addopts))
    required = _requirement_strings(_words(settings.get("required_plugins", [])))
    plugins = [*_plugins_for_options(tokens), *required]
    plugins += [plugin for key, plugin in _SETTING_PLUGINS.items() if key in settings]
    return list(dict.fromkeys(plugins))


def _plugins_for_options(tokens: list[str]) -> Iterator[str]:
    for index, option in enumerate(tokens):
        if option == "-p" and index + 1 < len(tokens):
            yield from _module_plugin(tokens[index + 1])
        elif option.startswith("-p") and not option.startswith("--"):
            yield from _module_plugin(option[2:])
        elif option.startswith("-n") and not option.startswith("--"):
            yield "pytest-xdist"
        else:
            name = option.split("=", 1)[0]
            yield from (plugin for prefix, plugin in _OPTION_PLUGINS.items() if _is_option(name, prefix))


def _is_option(option: str, prefix: str) -> bool:
    return option == prefix or (prefix.startswith("--") and option.startswith(prefix + "-"))


def _module_plugin(name: str) -> Iterator[str]:
    if not name.startswith("no:") and name in _MODULE_PLUGINS:
        yield _MODULE_PLUGINS[name]


def _pyproject_pytest(content: bytes) -> dict[str, Any] | None:
    pytest = _toml(content).get("tool", {}).get("pytest")
    if not isinstance(pytest, dict):
        return None
    options = pytest.get("ini_options")
    return options if isinstance(options, dict) else pytest


def _ini_section(content: bytes, section: str, *, required: bool = True) -> dict[str, Any] | None:
    ini = _ini(content)
    if not ini.has_section(section):
        return None if required else {}
    return dict(ini.items(section))


def _split(value: str) -> list[str]:
    return value.replace("\n", " ").split()


def _words(value: object) -> list[str]:
    return value if isinstance(value, list) else _split(str(value))


# -- reading files ---------------------------------------------------------------------------------------


def _toml(content: bytes) -> dict[str, Any]:
    try:
        return tomllib.loads(content.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _ini(content: bytes) -> configparser.ConfigParser:
    """An ini file as configparser reads it, without interpolation (`%` and `{…}` are tox's and pytest's);
    an unreadable one is empty."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    try:
        parser.read_string(content.decode(errors="replace"))
    except configparser.Error:
        return configparser.ConfigParser(interpolation=None)
    return parser


def _cfg_value(parser: configparser.ConfigParser, section: str, option: str) -> str | None:
    return parser.get(section, option, fallback=None)


def _cfg_list(parser: configparser.ConfigParser, section: str, option: str) -> list[str]:
    """A multi-line ini value, comments dropped (`;` is not a separator: environment markers use it)."""
    value = _cfg_value(parser, section, option) or ""
    lines = (line.split(" #")[0].strip() for line in value.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _as_list(value: object) -> list[Any]:
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, list | tuple) else []


def _requirement_strings(values: Iterable[object]) -> Iterator[str]:
    """Valid PEP 508 requirements only: a path, an option or a templated entry would make uv fail."""
    for value in values:
        try:
            yield str(Requirement(str(value).strip()))
        except InvalidRequirement:
            continue


def _setup_keywords(content: bytes) -> dict[str, Any]:
    """The literal keyword arguments of setup.py's `setup(…)` call, read with `ast` (never executed); a
    keyword given as a module-level name is looked up in the module's literal assignments."""
    try:
        tree = ast.parse(content)
    except (SyntaxError, ValueError):
        return {}
    names = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called_name(node.func) == "setup":
            return {k.arg: v for k in node.keywords if k.arg and (v := _literal(k.value, names)) is not None}
    return {}


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _literal(node: ast.expr, names: Mapping[str, ast.expr]) -> Any:
    if isinstance(node, ast.Name) and node.id in names:
        node = names[node.id]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
