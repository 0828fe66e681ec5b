from pathlib import Path

import pytest

from service_feature.worker.context import estimate_tokens
from service_feature.worker.repomap import build_repo_map, definitions, list_files, rank_files

PYTHON = '''"""Shapes."""
import math

from .units import Unit


class Shape(Base, metaclass=Meta):
    def __init__(self, name: str) -> None: ...
    def area(self) -> float: ...
    async def render(self, *, scale: int = 1) -> str: ...
    def _cache(self) -> None: ...
    def __repr__(self) -> str: ...


def circle(radius: float, unit: Unit = Unit.CM) -> Shape:
    return Shape("circle")


async def fetch(url: str) -> bytes: ...


def _helper() -> None: ...


CONSTANT = 3
'''

GO = """package store

import (
\t"context"
\t"example.com/app/internal/model"
)

type Store struct {
\tdb *sql.DB
}

type Finder interface {
\tFind(ctx context.Context, id string) (*model.Item, error)
}

func New(db *sql.DB) *Store {
\treturn &Store{db: db}
}

func (s *Store) Find(ctx context.Context, id string) (*model.Item, error) {
\treturn nil, nil
}
"""

TYPESCRIPT = """import { helper } from "./util";

export interface Options { verbose: boolean }
export type Id = string;
export default class Client {
  get(id: Id): string { return id; }
}
export async function connect(url: string): Promise<Client> {
  return new Client();
}
function local() {}
export const VERSION = "1.0";
"""

RUST = """use std::fmt;

pub struct Point { x: i32, y: i32 }

pub(crate) enum Kind { A, B }

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result { Ok(()) }
}

pub async fn load(path: &str) -> Result<Point, Error> {
    todo!()
}

pub trait Shape {}
"""


def test_python_definitions_come_from_its_parser() -> None:
    assert definitions("shapes.py", PYTHON) == [
        "class Shape(Base): __init__, area, render",
        "def circle(radius: float, unit: Unit=Unit.CM) -> Shape",
        "async def fetch(url: str) -> bytes",
    ]


def test_a_python_file_that_does_not_parse_has_no_definitions() -> None:
    assert definitions("broken.py", "def f(:\n") == []


def test_go_definitions() -> None:
    assert definitions("store/store.go", GO) == [
        "type Store struct",
        "type Finder interface: Find",
        "func New(db *sql.DB) *Store",
        "func (s *Store) Find(ctx context.Context, id string) (*model.Item, error)",
    ]


def test_typescript_definitions() -> None:
    assert definitions("client.ts", TYPESCRIPT) == [
        "export interface Options: verbose",
        "export type Id = string",
        "export default class Client: get",
        "export async function connect(url: string): Promise<Client>",
        "function local()",
        'export const VERSION = "1.0"',
    ]


JAVASCRIPT = """// function commented() {}
const template = "function inString() {}";
export default function () {}
export function multi(
  first,
  second,
) {
  return first;
}
export const handler = async (event) => event;
class Widget extends Base {
  constructor(props) { super(props); }
  render() {}
  _internal() {}
  #secret() {}
  static create() {}
}
"""


def test_javascript_definitions_come_from_a_parser_not_from_lines() -> None:
    """Comments and strings are not declarations; a signature over several lines is one; methods show."""
    assert definitions("widget.jsx", JAVASCRIPT) == [
        "export default function ()",
        "export function multi(first, second)",
        "export const handler = async (event)",
        "class Widget extends Base: constructor, render, create",
    ]


def test_typescript_members_leave_out_private_ones() -> None:
    source = """export abstract class Repo<T> implements Store {
  private cache = new Map();
  private load(): void {}
  protected abstract find(id: string): T;
  save(item: T): void {}
}
export interface Store { get(id: string): unknown; readonly size: number }
declare function ambient(name: string): void;
export enum Color { Red, Green }
"""
    assert definitions("repo.ts", source) == [
        "export abstract class Repo<T> implements Store: find, save",
        "export interface Store: get, size",
        "declare function ambient(name: string): void",
        "export enum Color",
    ]


def test_rust_definitions() -> None:
    assert definitions("src/point.rs", RUST) == [
        "pub struct Point",
        "pub(crate) enum Kind",
        "impl fmt::Display for Point: fmt",
        "pub async fn load(path: &str) -> Result<Point, Error>",
        "pub trait Shape",
    ]


def test_rust_impls_show_public_methods_and_traits_all_of_theirs() -> None:
    source = """impl Point {
    pub fn new(x: i32) -> Self { Point { x } }
    fn helper(&self) {}
}
pub trait Shape {
    fn area(&self) -> f64;
    fn name(&self) -> String { String::new() }
}
pub type Result<T> = std::result::Result<T, Error>;
"""
    assert definitions("src/shape.rs", source) == [
        "impl Point: new",
        "pub trait Shape: area, name",
        "pub type Result<T> = std::result::Result<T, Error>",
    ]


def test_go_grouped_types_and_a_half_written_file() -> None:
    """tree-sitter recovers from a syntax error: what parses around it is still outlined."""
    source = "package p\n\ntype (\n\tID int\n\tName = string\n)\n\nfunc Broken() {\n\tx := \n}\n"
    source += "\nfunc Fine() {}\n"
    expected = ["type ID int", "type Name = string", "func Broken()", "func Fine()"]
    assert definitions("p.go", source) == expected


def test_other_files_have_no_definitions() -> None:
    assert definitions("README.md", "# def f(): class X") == []


def test_long_definitions_are_shortened() -> None:
    many = ", ".join(f"argument_{n}: int" for n in range(20))
    (line,) = definitions("m.py", f"def f({many}) -> None: ...\n")
    assert len(line) == 120
    assert line.endswith("…")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {
        "README.md": "# app\n",
        "pyproject.toml": "[project]\n",
        "src/app/__init__.py": "",
        "src/app/greeting.py": "from app.names import normalise\n\ndef greet(name: str) -> str: ...\n",
        "src/app/names.py": "def normalise(name: str) -> str: ...\n",
        "src/app/web/views.py": "from app.greeting import greet\n\ndef index() -> str: ...\n",
        "src/app/db/models.py": "class User: ...\n",
        "src/lib/util.py": "def unrelated() -> None: ...\n",
        "tests/test_names.py": "from app.names import normalise\n\ndef test_n() -> None: ...\n",
        "docs/guide/deep/er/page.md": "text\n",
        ".git/config": "[core]\n",
        ".github/workflows/ci.yml": "on: push\n",
        "node_modules/pkg/index.js": "export function x() {}\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_hidden_and_dependency_folders_are_not_listed(repo: Path) -> None:
    files = list_files(repo)
    assert "src/app/greeting.py" in files
    assert not [f for f in files if f.startswith((".git", "node_modules"))]
    assert files == sorted(files)


def test_ranking_targets_then_neighbours_then_imports_then_the_rest(repo: Path) -> None:
    ranked = rank_files(repo, list_files(repo), ["src/app/greeting.py", "tests/test_greeting.py"])
    assert ranked[0] == "src/app/greeting.py"
    neighbours = {"src/app/__init__.py", "src/app/names.py", "tests/test_names.py"}
    assert set(ranked[1:4]) == neighbours
    assert ranked[4] == "src/app/web/views.py"  # imports the target
    assert ranked[5:] == [
        "README.md",
        "pyproject.toml",
        "src/lib/util.py",
        "src/app/db/models.py",
        "docs/guide/deep/er/page.md",
    ]


def test_the_map_lists_files_with_definitions_in_path_order(repo: Path) -> None:
    text = build_repo_map(repo, ["src/app/greeting.py"], 2_000)
    assert text.splitlines()[:3] == ["README.md", "docs/guide/deep/er/page.md", "pyproject.toml"]
    assert "src/app/greeting.py\n  def greet(name: str) -> str\n" in text
    assert "more files" not in text


def test_the_budget_cuts_the_least_relevant_files_first_and_deterministically(repo: Path) -> None:
    full = build_repo_map(repo, ["src/app/greeting.py"], 2_000)
    for budget in (30, 45, 60):
        text = build_repo_map(repo, ["src/app/greeting.py"], budget)
        assert estimate_tokens(text) <= budget
        assert text == build_repo_map(repo, ["src/app/greeting.py"], budget)
        assert "src/app/greeting.py\n  def greet(name: str) -> str" in text
        assert "docs/guide/deep/er/page.md" not in text  # ranked last
        assert text.endswith("more files not shown)")
    tight = build_repo_map(repo, ["src/app/greeting.py"], 45)
    assert len(tight) < len(full)
    assert "src/lib/util.py\n  def" not in tight


def test_a_zero_budget_means_no_map(repo: Path) -> None:
    assert build_repo_map(repo, ["src/app/greeting.py"], 0) == ""


def test_javascript_and_go_imports_link_files(tmp_path: Path) -> None:
    files = {
        "web/app.ts": 'import { helper } from "./lib/util";\nexport function main() {}\n',
        "web/lib/util.ts": "export function helper() {}\n",
        "web/lib/other.ts": "export function other() {}\n",
        "cmd/main.go": 'package main\n\nimport "example.com/app/internal/store"\n\nfunc main() {}\n',
        "internal/store/store.go": "package store\n\nfunc New() {}\n",
        "internal/other/other.go": "package other\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    ranked = rank_files(tmp_path, list_files(tmp_path), ["web/app.ts", "cmd/main.go"])
    assert ranked[:4] == ["web/app.ts", "cmd/main.go", "internal/store/store.go", "web/lib/util.ts"]
