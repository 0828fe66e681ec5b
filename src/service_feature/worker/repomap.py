"""A compact map of the repository for the agent's system prompt: its files, and what the source files define.

Without a map the model spends its first turns on `list_files` and `read_file` only to learn where things
are, and every later turn pays for those results again. A map of a few thousand tokens in the system prompt
is paid once per feature (it sits in the cached prefix) and points the model straight at the right files.

Ranking, most relevant first: the target files; their directory neighbours; files they import and files
importing them (Python, JavaScript/TypeScript relative imports, Go packages; skipped in big repositories,
where finding importers means parsing every file); then the rest, shallow paths first. Rank decides who gets
room under the token budget: files are taken in rank order with their definitions until one does not fit,
later ones with their path only, until no path fits; the map is then printed in path order, which reads like
a tree. Everything is sorted, so a repository gives the same map every time — the map is part of the prompt
prefix that provider caches key on.

Definitions: Python through `ast` (classes with their public method names, public functions with their
signatures); Go, JavaScript/TypeScript and Rust through tree-sitter in the same form (`outline.py`).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from service_feature.worker.context import estimate_tokens
from service_feature.worker.outline import SUFFIXES, outline

_SKIPPED_DIRS = frozenset(
    {"node_modules", "__pycache__", "venv", "target", "dist", "build", "vendor", "site-packages"}
)
_MAX_FILES = 20_000  # a bigger tree is listed up to here (in walk order, sorted per directory)
_MAX_PARSE_BYTES = 256_000  # larger files are listed without definitions
_MAX_IMPORT_SCAN = 2_000  # source files; above this, importers of the targets are not searched
_MAX_LINE = 120
_PYTHON = frozenset({".py", ".pyi"})
_JS = frozenset({".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts"})
_SOURCE = _PYTHON | SUFFIXES

_JS_IMPORT = re.compile(r"""(?:from\s+|import\s*\(?\s*|require\s*\(\s*)["'](\.{1,2}/[^"']+)["']""")
_GO_IMPORT = re.compile(r'^\s*(?:import\s+)?(?:\w+\s+)?"([\w./-]+)"\s*$', re.MULTILINE)


def build_repo_map(root: Path, target_files: Sequence[str], budget_tokens: int) -> str:
    """The map of the tree at `root`, ranked toward `target_files`, within `budget_tokens`; "" if 0."""
    if budget_tokens <= 0:
        return ""
    files = list_files(root)
    return render(root, rank_files(root, files, target_files), budget_tokens)


def list_files(root: Path) -> list[str]:
    """Repository-relative paths, sorted, without hidden directories and build or dependency folders."""
    found: list[str] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        base = Path(directory).relative_to(root)
        found.extend((base / name).as_posix() for name in sorted(names))
        if len(found) >= _MAX_FILES:
            break
    return sorted(found[:_MAX_FILES])


def rank_files(root: Path, files: Sequence[str], target_files: Sequence[str]) -> list[str]:
    """`files`, most relevant to `target_files` first (see the module docstring)."""
    present = set(files)
    targets = [t for t in dict.fromkeys(PurePosixPath(t).as_posix() for t in target_files) if t in present]
    target_dirs = {PurePosixPath(t).parent for t in target_files}
    neighbours = sorted(f for f in files if PurePosixPath(f).parent in target_dirs and f not in targets)
    near = set(targets) | set(neighbours)
    linked = sorted(_import_links(root, files, near) - near)
    first = [*targets, *neighbours, *linked]
    taken = set(first)
    rest = sorted((f for f in files if f not in taken), key=lambda f: (f.count("/"), f))
    return first + rest


def render(root: Path, ranked: Sequence[str], budget_tokens: int) -> str:
    """Entries for `ranked` files in rank order while they fit, printed in path order."""
    budget = budget_tokens - 10  # room for the "more files" line
    entries: dict[str, str] = {}
    used = 0
    detailed = True
    for path in ranked:
        entry = path
        if detailed:
            lines = definitions(path, _read(root / path))
            entry = "\n".join([path, *(f"  {line}" for line in lines)])
        cost = estimate_tokens(entry + "\n")
        if used + cost > budget and entry != path:
            detailed, entry = False, path
            cost = estimate_tokens(entry + "\n")
        if used + cost > budget:
            break
        entries[path] = entry
        used += cost
    text = "\n".join(entries[path] for path in sorted(entries))
    omitted = len(ranked) - len(entries)
    return text + (f"\n({omitted} more files not shown)" if omitted else "")


def definitions(path: str, text: str | None) -> list[str]:
    """The top-level definitions of a source file, one line each; [] for other files."""
    suffix = PurePosixPath(path).suffix
    if text is None or suffix not in _SOURCE:
        return []
    if suffix in _PYTHON:
        try:
            return list(_python_definitions(ast.parse(text)))
        except (SyntaxError, ValueError):
            return []
    return [_shorten(line) for line in outline(suffix, text.encode())]


def _python_definitions(module: ast.Module) -> Iterable[str]:
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(node.name):
            yield _shorten(_signature(node))
        elif isinstance(node, ast.ClassDef):
            bases = ", ".join(ast.unparse(base) for base in node.bases)
            methods = [
                item.name
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(item.name)
            ]
            head = f"class {node.name}({bases})" if bases else f"class {node.name}"
            yield _shorten(f"{head}: {', '.join(methods)}" if methods else head)


def _public(name: str) -> bool:
    """Private helpers are left out: the map is for finding one's way, reading a file shows the rest."""
    return not name.startswith("_") or name in ("__init__", "__call__")


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{prefix} {node.name}({ast.unparse(node.args)}){returns}"


def _shorten(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 1] + "…"


def _read(path: Path) -> str | None:
    """A source file's text; None for a big, binary or unreadable one."""
    if path.suffix not in _SOURCE:
        return None
    try:
        if path.stat().st_size > _MAX_PARSE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return None if b"\0" in data else data.decode("utf-8", errors="replace")


# -- import links ------------------------------------------------------------------------------------------


def _import_links(root: Path, files: Sequence[str], seeds: set[str]) -> set[str]:
    """Files imported by `seeds`, and (in repositories small enough) files importing them."""
    sources = [f for f in files if PurePosixPath(f).suffix in _SOURCE]
    index = _suffix_index(sources)
    linked: set[str] = set()
    for path in sorted(seeds):
        linked |= _resolve(path, _read(root / path), index)
    if len(sources) <= _MAX_IMPORT_SCAN:
        for path in sources:
            if path not in seeds and _resolve(path, _read(root / path), index) & seeds:
                linked.add(path)
    return linked


def _suffix_index(sources: Sequence[str]) -> dict[str, set[str]]:
    """Every trailing part of each source file's extension-less path, and of its package's path."""
    index: dict[str, set[str]] = {}
    for path in sources:
        pure = PurePosixPath(path)
        stem = pure.with_suffix("")
        keys = [stem.parts]
        if pure.suffix == ".go" or stem.name in ("__init__", "index"):  # a Go package is its directory
            keys.append(pure.parent.parts)
        for parts in keys:
            for start in range(len(parts)):
                index.setdefault("/".join(parts[start:]), set()).add(path)
    return index


def _resolve(path: str, text: str | None, index: dict[str, set[str]]) -> set[str]:
    """The repository files that `path` imports, as far as its import statements can be matched."""
    if text is None:
        return set()
    suffix = PurePosixPath(path).suffix
    found: set[str] = set()
    for key in _import_keys(path, suffix, text):
        found |= {f for f in index.get(key, set()) if PurePosixPath(f).suffix == suffix or suffix in _JS}
    found.discard(path)
    return found


def _import_keys(path: str, suffix: str, text: str) -> Iterable[str]:
    here = PurePosixPath(path).parent
    if suffix in _PYTHON:
        yield from _python_import_keys(here, text)
    elif suffix in _JS:
        for target in _JS_IMPORT.findall(text):
            yield os.path.normpath(here / target).replace(os.sep, "/")
    elif suffix == ".go":
        for target in _GO_IMPORT.findall(text):
            parts = target.split("/")
            if len(parts) > 1:  # one segment: the standard library ("fmt")
                yield from ("/".join(parts[start:]) for start in range(len(parts)))


def _python_import_keys(here: PurePosixPath, text: str) -> Iterable[str]:
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            yield from (alias.name.replace(".", "/") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module.replace(".", "/") if node.module else ""
            if node.level > len(here.parts) + 1:
                continue  # above the repository root
            if node.level:
                package = here.parents[node.level - 2] if node.level > 1 else here
                base = (package / base).as_posix() if base else package.as_posix()
            if base:
                yield base
            yield from (f"{base}/{alias.name}".lstrip("/") for alias in node.names)
