"""Node, Go and Rust projects set up and tested the project's way, through TestRunner and the real bubblewrap
sandbox: pnpm and yarn (installed from the npm registry in setup, since neither is on the executor) with a
frozen lock file and the tests offline, a vendored Go module, a Go workspace, a Rust workspace, and what is
reported when a repository cannot be set up.

Real installs from the npm registry, kept small (one dependency); the Go and Rust projects download nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service_feature.executor.runner import TestRunner
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.git import Git
from service_feature.models import Language
from tests.integration.executor.test_toolchains import LIMITS, Repository, failing, require, spec
from tests.support.projects import pnpm_project, yarn_classic_project

pytestmark = pytest.mark.xdist_group("node-go-rust-projects")


@pytest.fixture
def runner(bwrap_sandbox: BwrapSandbox, tmp_path: Path) -> TestRunner:
    """With a cache of its own: every test's first run is a miss."""
    git = Git(tmp_path / "executor", allow_local=True)
    setup = BwrapSandbox(network=True)
    return TestRunner(git, bwrap_sandbox, LIMITS, 2, setup_sandbox=setup, cache_root=tmp_path / "cache")


NODE_TESTS = {
    "test/number.test.js": """
        const test = require('node:test');
        const assert = require('node:assert');
        const isNumber = require('is-number');

        test('recognises numbers', () => { assert.ok(isNumber(5)); });
        test('fails on purpose', () => { assert.strictEqual(isNumber('x'), true); });
        test('has no network', async () => {
          await assert.rejects(fetch('https://registry.npmjs.org/is-number'));
        });
    """,
}


@pytest.mark.parametrize(
    ("files", "command"),
    [(pnpm_project("tiny-pnpm"), "pnpm test"), (yarn_classic_project("tiny-yarn"), "yarn test")],
    ids=["pnpm", "yarn-classic"],
)
async def test_pnpm_and_yarn_install_frozen_in_setup_and_test_offline(
    runner: TestRunner, tmp_path: Path, files: dict[str, str], command: str
) -> None:
    require(Language.javascript)
    repository = Repository(tmp_path / "node", {**files, **NODE_TESTS})

    first = await runner.run(spec(repository, Language.javascript))
    second = await runner.run(spec(repository, Language.javascript, name="f2"))

    assert first.command == command, first.output_tail
    assert (first.passed, first.failed) == (2, 1), first.output_tail
    assert failing(first) == ["fails on purpose"]
    assert first.environment is not None
    assert second.environment is not None
    assert (first.environment["installed"], first.environment["cached"]) == (True, False)
    assert second.environment["cached"]
    assert (second.passed, second.failed) == (2, 1), second.output_tail


async def test_a_project_whose_test_script_is_npm_s_placeholder_is_untestable(
    runner: TestRunner, tmp_path: Path
) -> None:
    require(Language.javascript)
    placeholder = '{"name": "bare", "scripts": {"test": "echo \\"Error: no test specified\\" && exit 1"}}'
    repository = Repository(
        tmp_path / "bare", {"package.json": placeholder, "index.js": "module.exports = 1;\n"}
    )

    prepared = await runner.prepare(spec(repository, Language.javascript))

    assert prepared.untestable is not None
    assert "npm's placeholder" in prepared.untestable


NPM_WORKSPACES = {
    # A monorepo: the root's tests use a member through the link npm makes in node_modules; a tool writes
    # its cache in node_modules/.cache, as nyc does.
    "package.json": json.dumps(
        {
            "name": "mono",
            "private": True,
            "workspaces": ["packages/*"],
            "scripts": {"test": "node --test"},
        }
    ),
    "packages/greeter/package.json": json.dumps({"name": "greeter", "version": "1.0.0"}),
    "packages/greeter/index.js": "module.exports = (name) => `hello ${name}`;\n",
    "test/greeter.test.js": """
        const test = require('node:test');
        const assert = require('node:assert');
        const fs = require('node:fs');
        const greet = require('greeter');

        test('the member is from the checkout', () => { assert.strictEqual(greet('you'), 'hello you'); });
        test('node_modules takes a cache', () => {
          fs.mkdirSync('node_modules/.cache/tool', { recursive: true });
        });
    """,
}


async def test_an_npm_workspace_member_and_a_tool_cache_in_node_modules(
    runner: TestRunner, tmp_path: Path
) -> None:
    require(Language.javascript)
    repository = Repository(tmp_path / "mono", NPM_WORKSPACES)
    change = repository.diff({"packages/greeter/index.js": "module.exports = (name) => `hi ${name}`;\n"})

    base = await runner.run(spec(repository, Language.javascript))
    patched = await runner.run(spec(repository, Language.javascript, diff=change, name="f2"))

    assert (base.passed, base.failed) == (2, 0), base.output_tail
    # the patched member is what the tests import, not the one setup saw
    assert failing(patched) == ["the member is from the checkout"], patched.output_tail


GO_VENDORED = {
    # example.com/greet exists only in vendor/: the proxy is never asked (and is not reachable here).
    "go.mod": "module example.com/app\n\ngo 1.19\n\nrequire example.com/greet v1.0.0\n",
    "vendor/modules.txt": "# example.com/greet v1.0.0\n## explicit\nexample.com/greet\n",
    "vendor/example.com/greet/greet.go": 'package greet\n\nfunc Hello() string { return "hello" }\n',
    "app.go": (
        'package app\n\nimport "example.com/greet"\n\nfunc Greeting() string { return greet.Hello() }\n'
    ),
    "app_test.go": """
        package app

        import "testing"

        func TestGreeting(t *testing.T) {
        \tif Greeting() != "hello" {
        \t\tt.Fatal(Greeting())
        \t}
        }
    """,
}

GO_WORKSPACE = {
    "go.work": "go 1.19\n\nuse (\n\t./lib\n\t./cmd/tool\n)\n",
    "lib/go.mod": "module example.com/lib\n\ngo 1.19\n",
    "lib/lib.go": "package lib\n\nfunc Twice(n int) int { return 2 * n }\n",
    "cmd/tool/go.mod": "module example.com/tool\n\ngo 1.19\n\nrequire example.com/lib v0.0.0\n",
    "cmd/tool/tool.go": (
        'package tool\n\nimport "example.com/lib"\n\nfunc Four() int { return lib.Twice(2) }\n'
    ),
    "cmd/tool/tool_test.go": """
        package tool

        import "testing"

        func TestFour(t *testing.T) {
        \tif Four() != 4 {
        \t\tt.Fatal(Four())
        \t}
        }
    """,
}


async def test_a_vendored_go_module_and_a_go_workspace(runner: TestRunner, tmp_path: Path) -> None:
    require(Language.go)
    vendored = Repository(tmp_path / "vendored", GO_VENDORED)
    workspace = Repository(tmp_path / "workspace", GO_WORKSPACE)

    from_vendor = await runner.run(spec(vendored, Language.go))
    from_workspace = await runner.run(spec(workspace, Language.go, name="f2"))

    assert (from_vendor.passed, from_vendor.failed, from_vendor.errored) == (1, 0, 0), from_vendor.output_tail
    assert from_vendor.environment is not None
    assert not from_vendor.environment["installed"]  # vendor/ has it all: no setup
    assert (from_workspace.passed, from_workspace.failed) == (1, 0), from_workspace.output_tail
    assert from_workspace.command == "go test -json ./lib/... ./cmd/tool/..."


async def test_a_go_line_newer_than_the_installed_go_is_reported_before_any_setup(
    runner: TestRunner, tmp_path: Path
) -> None:
    require(Language.go)
    repository = Repository(tmp_path / "new", {"go.mod": "module x\n\ngo 1.99.0\n", "x.go": "package x\n"})

    prepared = await runner.prepare(spec(repository, Language.go))

    assert prepared.untestable is not None
    assert "go.mod requires Go 1.99.0" in prepared.untestable
    assert "GOTOOLCHAIN=local" in prepared.untestable


RUST_WORKSPACE = {
    "Cargo.toml": '[workspace]\nmembers = ["alpha", "beta"]\nresolver = "2"\n',
    "Cargo.lock": (
        "version = 3\n\n"
        '[[package]]\nname = "alpha"\nversion = "0.1.0"\n\n'
        '[[package]]\nname = "beta"\nversion = "0.1.0"\ndependencies = [\n "alpha",\n]\n'
    ),
    "alpha/Cargo.toml": '[package]\nname = "alpha"\nversion = "0.1.0"\nedition = "2021"\n',
    "alpha/src/lib.rs": """
        pub fn one() -> i32 { 1 }

        #[cfg(test)]
        mod tests {
            #[test]
            fn alpha_works() { assert_eq!(super::one(), 1); }
        }
    """,
    "beta/Cargo.toml": (
        '[package]\nname = "beta"\nversion = "0.1.0"\nedition = "2021"\n\n'
        '[dependencies]\nalpha = { path = "../alpha" }\n'
    ),
    "beta/src/lib.rs": """
        pub fn two() -> i32 { alpha::one() + alpha::one() }

        #[cfg(test)]
        mod tests {
            #[test]
            fn beta_fails() { assert_eq!(super::two(), 3, "two is not three"); }
        }
    """,
}


async def test_a_rust_workspace_tests_every_member_and_a_missing_crate_fails_setup_saying_where(
    runner: TestRunner, tmp_path: Path
) -> None:
    require(Language.rust)
    workspace = Repository(tmp_path / "workspace", RUST_WORKSPACE)
    manifest = '[package]\nname = "needy"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
    # A crate no registry has: setup fails with or without a network, in cargo's own words.
    needy = Repository(
        tmp_path / "needy",
        {"Cargo.toml": manifest + 'service-feature-no-such-crate = "1"\n', "src/lib.rs": "\n"},
    )

    tested = await runner.run(spec(workspace, Language.rust))
    failed = await runner.prepare(spec(needy, Language.rust, name="f2"))

    assert (tested.passed, tested.failed) == (1, 1), tested.output_tail
    # both members' unit tests are in a `src/lib.rs`: the crate tells them apart
    assert failing(tested) == ["src/lib.rs (beta)::tests::beta_fails"]
    assert "two is not three" in tested.failures[0].message
    assert failed.untestable is not None
    assert "`cargo fetch`" in failed.untestable
    assert "service-feature-no-such-crate" in failed.untestable  # cargo's output tail says which
