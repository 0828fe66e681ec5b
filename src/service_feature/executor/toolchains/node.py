"""JavaScript and TypeScript: the project's own package manager (npm, yarn or pnpm) installs in setup with its
frozen-lockfile flag, and runs the project's `test` script offline.

Which manager: `package.json`'s `packageManager` field (what corepack and the managers themselves honour),
else the lock file (pnpm-lock.yaml, yarn.lock, package-lock.json / npm-shrinkwrap.json, in that order),
else npm. npm is the executor's own; yarn and pnpm are not on the executor, and corepack would download
them when first run, i.e. in the offline test step. So setup installs the pinned manager (or, without a
pin, the one the lock file's format belongs to) from the npm registry into the home, `<home>/pm`, whose
`node_modules/.bin` is on PATH in both steps: the test step finds it in the read-only cache entry.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import posixpath
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service_feature.executor.results import Counts, parse_any, parse_javascript
from service_feature.executor.toolchains.base import DependencyFiles, Toolchain, command_output, host_path
from service_feature.models import Language

NPM_LOCKS = ("package-lock.json", "npm-shrinkwrap.json")
# Throw-away caches of the setup checkout (yarn's, pnpm's store): next to the home, not in it, so they are
# not moved into the cache entry, and on the workspace's file system, so pnpm hard-links from its store.
SCRATCH_DIR = ".service-feature-cache"
_PM_DIR = "pm"
# Node's own variable for extra CAs (a TLS-inspecting proxy's): every manager honours it, yarn 2+ included,
# which reads no npmrc.
_EXTRA_CA_VARIABLE = "NODE_EXTRA_CA_CERTS"
_VERSION = re.compile(r"\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.-]+)?")
_PNPM_LOCK_VERSION = re.compile(rb"^lockfileVersion:\s*['\"]?(\d+)(?:\.(\d+))?", re.MULTILINE)
_BERRY_LOCK_VERSION = re.compile(rb"^__metadata:\s*\n\s+version:\s*(\d+)", re.MULTILINE)
# What each manager prints when there is no `test` script, and npm's placeholder script's own output.
_NO_TEST_SCRIPT = re.compile(
    r"missing script:?\s*\"?test\b|Command \"test\" not found|Couldn't find a script named \"test\"",
    re.IGNORECASE,
)
_PLACEHOLDER_TEST_SCRIPT = "Error: no test specified"


@dataclass(frozen=True)
class PackageManager:
    """How one project installs its dependencies and runs its scripts."""

    name: str  # the command: npm, yarn or pnpm
    package: str = ""  # what setup installs from the npm registry; "" for npm, the executor's own
    version: str = ""  # the version (or major) of `package`
    berry: bool = False  # yarn 2 and later, configured through YARN_* variables

    def install(self, home: str, locked: bool) -> list[str]:
        """The frozen-lockfile install (a plain one without a lock file, which CI mode would refuse)."""
        if self.name == "pnpm":
            store = f"--store-dir={posixpath.dirname(home)}/{SCRATCH_DIR}/pnpm-store"
            return ["pnpm", "install", "--frozen-lockfile" if locked else "--no-frozen-lockfile", store]
        if self.berry:
            return ["yarn", "install", "--immutable" if locked else "--no-immutable"]
        if self.name == "yarn":
            return ["yarn", "install", "--non-interactive", *(["--frozen-lockfile"] if locked else [])]
        return ["npm", "ci" if locked else "install", "--no-audit", "--no-fund"]


NPM = PackageManager("npm")
_LOCKS = {"pnpm": "pnpm-lock.yaml", "yarn": "yarn.lock", "npm": NPM_LOCKS[0]}


def package_manager(files: DependencyFiles) -> PackageManager:
    """The project's package manager, from `packageManager` or else its lock file; npm without either."""
    name, version = _declared(files.get("package.json", b""))
    if not name:
        name = next((n for n in ("pnpm", "yarn") if _LOCKS[n] in files), "npm")
    if name == "pnpm":
        return PackageManager("pnpm", "pnpm", version or _pnpm_for(files.get("pnpm-lock.yaml", b"")))
    if name == "yarn":
        version = version or _yarn_for(files.get("yarn.lock", b""))
        berry = int(version.split(".")[0]) >= 2
        return PackageManager("yarn", "@yarnpkg/cli-dist" if berry else "yarn", version, berry)
    return NPM


class NodeToolchain(Toolchain):
    """The package manager's install in setup; `node_modules` is kept in the cache and the test workspace
    gets a link to it, which node follows (it resolves symlinks), so a package's own dependencies resolve
    inside the read-only cache entry. yarn 2+ installs with the node-modules linker: Plug'n'Play's
    `.pnp.cjs` locates packages relative to itself, which a link into the cache would break.

    The module-level instance runs npm; `for_project` gives the one configured for a repository."""

    languages = (Language.javascript, Language.typescript)
    binary = "node"
    dependency_patterns = (
        "package.json",
        *NPM_LOCKS,
        "yarn.lock",
        "pnpm-lock.yaml",
        "pnpm-workspace.yaml",
        ".npmrc",
        ".yarnrc",
        ".yarnrc.yml",
    )
    kept = ("node_modules",)
    scratch = (SCRATCH_DIR,)
    version_commands = (("node", "--version"), ("npm", "--version"))

    def __init__(self, manager: PackageManager = NPM) -> None:
        self.manager = manager

    def for_project(self, files: DependencyFiles) -> NodeToolchain:
        manager = package_manager(files)
        if manager == self.manager:
            return self
        _ = self.installation, self.version, self.global_npmrc  # found once, shared with the copy
        configured = copy.copy(self)
        configured.manager = manager
        return configured

    def needs_setup(self, files: DependencyFiles) -> bool:
        if package_manager(files).package or any(lock in files for lock in NPM_LOCKS):
            return True  # yarn and pnpm themselves are installed in setup
        # Workspaces: their members are linked into node_modules by the install, dependencies or not.
        keys = ("dependencies", "devDependencies", "workspaces")
        return _json_has_any(files.get("package.json", b""), keys)

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        manager = package_manager(files)
        locks = NPM_LOCKS if manager.name == "npm" else (_LOCKS[manager.name],)
        locked = any(lock in files for lock in locks)
        install = manager.install(home, locked)
        if not manager.package:
            return [install]
        fetch = ["npm", "install", "--prefix", f"{home}/{_PM_DIR}", "--no-audit", "--no-fund"]
        if self.global_npmrc:
            # --prefix moves npm's global config too, and with it a registry or CA file set there.
            fetch.append(f"--globalconfig={self.global_npmrc}")
        return [[*fetch, "--ignore-scripts", f"{manager.package}@{manager.version}"], install]

    def test_command(self, home: str | None) -> list[str]:
        return [self.manager.name, "test"]

    @functools.cached_property
    def global_npmrc(self) -> str:
        """The executor's global npmrc (`<node prefix>/etc/npmrc`), where an operator sets a registry mirror
        or a CA file; "" without one. The sandbox shows it: it is in a system dir or the bound install."""
        installation = self.installation
        if installation is None:
            return ""
        found = command_output([str(installation.bin_dir / "npm"), "config", "get", "globalconfig"])
        return found if found and Path(found).is_file() else ""

    def path_dirs(self, home: str | None) -> list[str]:
        installed = [f"{home}/{_PM_DIR}/node_modules/.bin"] if home and self.manager.package else []
        return [*installed, *super().path_dirs(home)]

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        variables = {"npm_config_update_notifier": "false", "npm_config_fund": "false"}
        if online and (certificates := os.environ.get(_EXTRA_CA_VARIABLE)):
            variables[_EXTRA_CA_VARIABLE] = certificates  # the CA the executor reaches registries with
        if not online:
            variables["npm_config_offline"] = "true"
        scratch = f"{workspace}/{SCRATCH_DIR}"
        if self.manager.berry:
            variables |= {
                "YARN_NODE_LINKER": "node-modules",
                "YARN_ENABLE_TELEMETRY": "0",
                "YARN_ENABLE_GLOBAL_CACHE": "false",
                "YARN_ENABLE_NETWORK": "1" if online else "0",
            }
            if home:  # `yarn run` reads the install's state; it must be in the cache entry with node_modules
                variables["YARN_INSTALL_STATE_PATH"] = f"{home}/yarn-install-state.gz"
            if online:
                variables |= {
                    "YARN_CACHE_FOLDER": f"{scratch}/yarn",
                    "YARN_GLOBAL_FOLDER": f"{scratch}/berry",
                }
        elif self.manager.name == "yarn" and online:
            variables["YARN_CACHE_FOLDER"] = f"{scratch}/yarn"
        return variables

    def missing(self) -> str | None:
        if self.installation is None:
            return "node is not installed on the executor"
        if shutil.which("npm", path=":".join([str(self.installation.bin_dir), *host_path()])) is None:
            return "npm is not installed on the executor (Debian's nodejs package comes without it)"
        return None

    def untestable(self, baseline: Mapping[str, Any], command: str) -> str | None:
        reason = super().untestable(baseline, command)
        if reason is None or baseline.get("timed_out"):
            return reason
        output = str(baseline.get("output_tail", ""))
        if _PLACEHOLDER_TEST_SCRIPT in output:
            return (
                f"baseline: `{command}`: package.json's test script is npm's placeholder "
                '(`echo "Error: no test specified" && exit 1`): the project has no tests to run'
            )
        if _NO_TEST_SCRIPT.search(output):
            return f"baseline: `{command}`: package.json has no test script: the project has no tests to run"
        return reason

    def parse(self, output: str, workdir: Path) -> Counts | None:
        return parse_javascript(output) or parse_any(output)


def _declared(content: bytes) -> tuple[str, str]:
    """`packageManager: "pnpm@9.1.0+sha512.…"` as ("pnpm", "9.1.0"); ("", "") when absent or unusable."""
    field = _json(content).get("packageManager")
    if not isinstance(field, str) or "@" not in field:
        return "", ""
    name, _, version = field.partition("@")
    version = version.partition("+")[0]
    if name not in ("npm", "yarn", "pnpm") or not _VERSION.fullmatch(version):
        return "", ""
    return name, version


def _pnpm_for(lock: bytes) -> str:
    """The pnpm major that writes this lock file format, so that --frozen-lockfile accepts it."""
    match = _PNPM_LOCK_VERSION.search(lock)
    if match is None:
        return "9"
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if major >= 9:
        return "9"
    if major >= 6:
        return "8"
    return "7" if (major, minor) >= (5, 4) else "6"


def _yarn_for(lock: bytes) -> str:
    """yarn classic for a v1 lock file (or none); else the berry major whose lock file format it is."""
    if b"# yarn lockfile v1" in lock[:1024] or not lock.strip():
        return "1"
    match = _BERRY_LOCK_VERSION.search(lock)
    if match is None:
        return "1"
    version = int(match.group(1))
    return "4" if version >= 8 else "3" if version >= 5 else "2"


def _json(content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _json_has_any(content: bytes, keys: tuple[str, ...]) -> bool:
    try:
        data = json.loads(content or b"{}")
    except ValueError:
        return True  # npm will say what is wrong with it
    return isinstance(data, dict) and any(data.get(key) for key in keys)
