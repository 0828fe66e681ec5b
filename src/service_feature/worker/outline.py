"""Go, JavaScript/TypeScript and Rust through tree-sitter: outlines for the repository map, and the syntax
errors of a file the agent just wrote (`syntax_errors`), so it hears of them before a test run does.

One line per top-level declaration, in the form the Python map uses: a function as its signature (its text up
to the body), a type with the names of its members (`export class Client extends Base: get, make`,
`type Finder interface: Find`, `impl fmt::Display for Point: fmt`), an alias or an exported constant as
written. A parser, unlike a line pattern, sees a declaration split over lines whole, the methods inside a
class, interface, trait or impl, and nothing inside comments or strings. Private members are left out, as in
the Python map: `#name` and `private` in JavaScript/TypeScript, `_name`, and functions without `pub` in a
Rust inherent `impl` (a trait's methods are its interface, so they are all shown).

tree-sitter recovers from syntax errors, so a file the agent is halfway through editing still gets an
outline of what parses. Grammars come from the tree-sitter project's own wheels, one per language.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable, Iterator

import tree_sitter_go
import tree_sitter_javascript
import tree_sitter_rust
import tree_sitter_typescript
from tree_sitter import Language, Node, Parser

_GRAMMARS: dict[str, Callable[[], object]] = {
    ".go": tree_sitter_go.language,
    ".rs": tree_sitter_rust.language,
    ".ts": tree_sitter_typescript.language_typescript,
    ".mts": tree_sitter_typescript.language_typescript,
    ".cts": tree_sitter_typescript.language_typescript,
    ".tsx": tree_sitter_typescript.language_tsx,
    ".js": tree_sitter_javascript.language,
    ".jsx": tree_sitter_javascript.language,
    ".mjs": tree_sitter_javascript.language,
    ".cjs": tree_sitter_javascript.language,
}
SUFFIXES = frozenset(_GRAMMARS)
_per_thread = threading.local()

_JS_HEADS = frozenset(
    {"function_declaration", "generator_function_declaration", "function_signature", "enum_declaration"}
)
_JS_TYPES = frozenset({"class_declaration", "abstract_class_declaration", "interface_declaration"})
_JS_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})
_JS_MEMBERS = frozenset(
    {"method_definition", "method_signature", "abstract_method_signature", "property_signature"}
)
_OPENING = re.compile(r"\(\s+")
_CLOSING = re.compile(r",?\s+\)")
_RUST_TYPES = frozenset({"struct_item", "enum_item", "union_item", "mod_item"})
_RUST_FUNCTIONS = frozenset({"function_item", "function_signature_item"})


def outline(suffix: str, source: bytes) -> list[str]:
    """The top-level declarations of a file with this suffix, one line each (not yet shortened)."""
    root = _parser(suffix).parse(source).root_node
    if suffix == ".go":
        walk: Callable[[Node], Iterable[str]] = _go
    elif suffix == ".rs":
        walk = _rust
    else:
        walk = _javascript
    return [line for node in root.named_children for line in walk(node)]


def syntax_errors(suffix: str, source: bytes, limit: int = 3) -> list[str]:
    """Where the file does not parse, at most `limit` places: `line N: unexpected 'text'` for what the
    parser had to skip, `line N: missing 'x'` for what it had to assume."""
    problems: list[str] = []
    stack = [_parser(suffix).parse(source).root_node]
    while stack and len(problems) < limit:
        node = stack.pop()
        if not node.has_error:
            continue
        line = node.start_point[0] + 1
        if node.is_missing:
            problems.append(f"line {line}: missing {node.type!r}")
        elif node.type == "ERROR":
            text = (node.text or b"").decode(errors="replace").strip().splitlines()
            problems.append(
                f"line {line}: unexpected {text[0][:60]!r}" if text else f"line {line}: syntax error"
            )
            continue  # what is inside the skipped text says nothing more
        stack.extend(reversed(node.children))
    return problems


def _parser(suffix: str) -> Parser:
    """A parser per thread: the worker builds maps in threads (`asyncio.to_thread`), one feature each, and a
    tree-sitter parser holds the state of one parse; languages are immutable and shared."""
    parsers: dict[str, Parser] = _per_thread.__dict__.setdefault("parsers", {})
    if suffix not in parsers:
        parsers[suffix] = Parser(_language(suffix))
    return parsers[suffix]


@functools.cache
def _language(suffix: str) -> Language:
    return Language(_GRAMMARS[suffix]())


# -- JavaScript / TypeScript -------------------------------------------------------------------------------


def _javascript(node: Node, start: Node | None = None) -> Iterator[str]:
    """`start`: the node the line begins at (an `export` or `declare` around the declaration)."""
    start = start or node
    kind = node.type
    if kind in ("export_statement", "ambient_declaration"):
        inner = node.child_by_field_name("declaration") or _first_named(node)
        if inner is not None:
            yield from _javascript(inner, start)
    elif kind in _JS_HEADS or (kind in _JS_FUNCTION_VALUES and start is not node):  # export default function
        yield _head(start, node)
    elif kind in _JS_TYPES:
        yield _with_members(_head(start, node), _js_members(node.child_by_field_name("body")))
    elif kind == "type_alias_declaration":
        yield _text(start, node.end_byte)
    elif kind in ("lexical_declaration", "variable_declaration"):
        exported = start is not node
        for declarator in node.named_children:
            value = declarator.child_by_field_name("value")
            if value is not None and value.type in _JS_FUNCTION_VALUES:
                yield _head(start, value)
            elif exported:
                yield _text(start, node.end_byte)
            start = declarator  # a second declarator's line starts at its name


def _js_members(body: Node | None) -> Iterator[str]:
    for member in body.named_children if body is not None else ():
        name = member.child_by_field_name("name")
        modifiers = {child.text for child in member.named_children if child.type == "accessibility_modifier"}
        if member.type in _JS_MEMBERS and name is not None and b"private" not in modifiers:
            yield _name(name)


# -- Go ----------------------------------------------------------------------------------------------------


def _go(node: Node) -> Iterator[str]:
    if node.type in ("function_declaration", "method_declaration"):
        yield _head(node, node)
    elif node.type == "type_declaration":
        for spec in node.named_children:
            if spec.type not in ("type_spec", "type_alias"):
                continue
            line = "type " + _text(spec, spec.end_byte).split("{", 1)[0].rstrip()
            kind = spec.child_by_field_name("type")
            if kind is not None and kind.type == "interface_type":
                methods = (m.child_by_field_name("name") for m in kind.named_children)
                line = _with_members(line, (_name(m) for m in methods if m is not None))
            yield line


# -- Rust --------------------------------------------------------------------------------------------------


def _rust(node: Node) -> Iterator[str]:
    kind = node.type
    if kind in _RUST_FUNCTIONS or kind in _RUST_TYPES:
        yield _head(node, node)
    elif kind == "type_item":
        yield _text(node, node.end_byte)
    elif kind in ("trait_item", "impl_item"):
        public_only = kind == "impl_item" and node.child_by_field_name("trait") is None
        yield _with_members(_head(node, node), _rust_functions(node.child_by_field_name("body"), public_only))


def _rust_functions(body: Node | None, public_only: bool) -> Iterator[str]:
    for item in body.named_children if body is not None else ():
        name = item.child_by_field_name("name")
        public = any(child.type == "visibility_modifier" for child in item.named_children)
        if item.type in _RUST_FUNCTIONS and name is not None and (public or not public_only):
            yield _name(name)


# -- text --------------------------------------------------------------------------------------------------


def _head(start: Node, node: Node) -> str:
    """From `start` to where `node`'s body begins (the whole node when it has none)."""
    body = node.child_by_field_name("body")
    return _text(start, body.start_byte if body is not None else node.end_byte)


def _text(start: Node, end: int) -> str:
    """The source from `start` to byte `end`, on one line, without a trailing `;`, `=` or `=>`."""
    source = start.text or b""
    text = " ".join(source[: end - start.start_byte].decode("utf-8", errors="replace").split())
    text = _CLOSING.sub(")", _OPENING.sub("(", text))  # parameters that were one per line
    return text.removesuffix("=>").rstrip(" ;=")


def _with_members(head: str, members: Iterable[str]) -> str:
    shown = [name for name in members if not name.startswith(("_", "#"))]
    return f"{head}: {', '.join(shown)}" if shown else head


def _name(node: Node) -> str:
    return (node.text or b"").decode("utf-8", errors="replace")


def _first_named(node: Node) -> Node | None:
    return node.named_children[0] if node.named_children else None
