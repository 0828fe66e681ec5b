"""JavaScript and TypeScript: the package manager's install in setup, `npm test` offline."""

from __future__ import annotations

import json
from pathlib import Path

from service_feature.executor.results import Counts, parse_any, parse_javascript
from service_feature.executor.toolchains.base import DependencyFiles, Toolchain
from service_feature.models import Language


class NodeToolchain(Toolchain):
    """`npm ci` (or `npm install` without a lock file) in setup; `node_modules` is kept in the cache and the
    test workspace gets a link to it, which node follows (it resolves symlinks), so a package's own
    dependencies resolve inside the read-only cache entry."""

    languages = (Language.javascript, Language.typescript)
    binary = "node"
    dependency_patterns = ("package.json", "package-lock.json", "npm-shrinkwrap.json")
    kept = ("node_modules",)
    version_commands = (("node", "--version"), ("npm", "--version"))

    def needs_setup(self, files: DependencyFiles) -> bool:
        if "package-lock.json" in files or "npm-shrinkwrap.json" in files:
            return True
        return _json_has_any(files.get("package.json", b""), ("dependencies", "devDependencies"))

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        locked = "package-lock.json" in files or "npm-shrinkwrap.json" in files
        return [["npm", "ci" if locked else "install", "--no-audit", "--no-fund"]]

    def test_command(self, home: str | None) -> list[str]:
        return ["npm", "test"]

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        offline = {} if online else {"npm_config_offline": "true"}
        return {"npm_config_update_notifier": "false", "npm_config_fund": "false", **offline}

    def parse(self, output: str, workdir: Path) -> Counts | None:
        return parse_javascript(output) or parse_any(output)


def _json_has_any(content: bytes, keys: tuple[str, ...]) -> bool:
    try:
        data = json.loads(content or b"{}")
    except ValueError:
        return True  # npm will say what is wrong with it
    return isinstance(data, dict) and any(data.get(key) for key in keys)
