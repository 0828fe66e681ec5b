"""Go: the modules the tests build downloaded in setup, `go test` offline, in Go's default module mode.

No `-mod=mod`: Go decides as it does for the project's developers. A module with `vendor/modules.txt`
builds with `-mod=vendor` and needs no setup; a `go.work` means workspace mode, which refuses `-mod=mod`;
otherwise `-mod=readonly` against go.sum. Setup is `go list -deps -test` of the packages the tests build
rather than `go mod download`, which in Go 1.19 does not understand workspaces (it looks the workspace's own
modules up on the proxy).

GOTOOLCHAIN=local: a `go` line newer than the installed Go is reported as the reason the repository cannot
be tested (Go ≥ 1.21 would refuse it too; Go 1.19 cannot even parse `go 1.22.0`), not downloaded.
"""

from __future__ import annotations

import copy
import posixpath
import re
from pathlib import Path

from service_feature.executor.results import Counts, parse_any, parse_go_json
from service_feature.executor.toolchains.base import (
    GO_BUILD_CACHE,
    DependencyFiles,
    SetupStep,
    Toolchain,
)
from service_feature.models import Language

_ALL = ("./...",)
VENDORED = "vendor/modules.txt"
_GO_LINE = re.compile(r"^go\s+(\d+)\.(\d+)(?:\.(\d+))?", re.MULTILINE)
_TOOLCHAIN_LINE = re.compile(r"^toolchain\s", re.MULTILINE)
_INSTALLED = re.compile(r"\bgo(\d+)\.(\d+)(?:\.(\d+))?")
_USE_BLOCK = re.compile(r"^use\s*\(([^)]*)\)", re.MULTILINE)
_USE_LINE = re.compile(r"^use\s+([^\s(]\S*)", re.MULTILINE)
_COMMENT = re.compile(r"//.*")
_FIRST_WITH_TOOLCHAIN_LINE = (1, 21, 0)

Version = tuple[int, int, int]


class GoToolchain(Toolchain):
    """Modules into GOMODCACHE (in the home) in setup; `go test -json` offline (GOPROXY=off) against it. The
    build cache is per run, in the workspace (Go writes to it during tests; `./...` skips dot dirs)."""

    languages = (Language.go,)
    binary = "go"
    # A workspace's modules are in subdirectories (one or two levels, as go.work files usually have them);
    # vendor/modules.txt is what is vendored: a patch that changes it changes the dependencies.
    dependency_patterns = (
        "go.mod",
        "go.sum",
        "go.work",
        "go.work.sum",
        VENDORED,
        *(f"{prefix}{name}" for prefix in ("*/", "*/*/") for name in ("go.mod", "go.sum")),
    )
    version_commands = (("go", "version"),)
    scratch = (GO_BUILD_CACHE,)

    def __init__(self, packages: tuple[str, ...] = _ALL, *, vendored: bool = False) -> None:
        self.packages = packages  # `./...`, or one pattern per module of a go.work
        self.vendored = vendored  # a module (not a workspace) with vendor/modules.txt
        self.module_path = ""  # what `go mod init` names a repository without go.mod (its address's path)

    def for_repository(self, url: str) -> GoToolchain:
        path = module_path(url)
        if path == self.module_path:
            return self
        _ = self.installation, self.version  # found once, shared with the copy
        configured = copy.copy(self)
        configured.module_path = path
        return configured

    def for_project(self, files: DependencyFiles) -> GoToolchain:
        packages, vendored = _packages(files), _vendored(files)
        if (packages, vendored) == (self.packages, self.vendored):
            return self
        _ = self.installation, self.version  # found once, shared with the copy
        configured = copy.copy(self)
        configured.packages, configured.vendored = packages, vendored
        return configured

    def unsupported(self, files: DependencyFiles) -> str | None:
        installed = _installed(self.version)
        if installed is None:
            return None
        go = "go{}.{}.{}".format(*installed)
        for name in ("go.work", "go.mod"):
            text = _text(files.get(name, b""))
            required = _GO_LINE.search(text)
            if required is not None and _version(required) > installed:
                return (
                    f"{name} requires Go {required.group(0).split()[1]} (its `go` line), newer than the "
                    f"executor's {go}: with GOTOOLCHAIN=local no other toolchain is downloaded, so this "
                    "repository cannot be built here"
                )
            if _TOOLCHAIN_LINE.search(text) and installed < _FIRST_WITH_TOOLCHAIN_LINE:
                return f"{name} has a `toolchain` line, which the executor's {go} cannot read (Go 1.21+)"
        return None

    def needs_setup(self, files: DependencyFiles) -> bool:
        """Any module or workspace, except a vendored module: it builds from vendor/, downloading nothing;
        and a repository from before modules (no go.mod), which setup makes one."""
        return "go.work" in files or not _vendored(files)

    def key_files(self, files: DependencyFiles) -> DependencyFiles:
        """Without a go.work, nested modules are not built by `./...`: their files do not make the key."""
        if "go.work" in files:
            return files
        return {name: content for name, content in files.items() if "/" not in name or name == VENDORED}

    def setup_steps(self, home: str, files: DependencyFiles) -> list[SetupStep]:
        """What the tests build, downloaded; a repository from before modules (no go.mod, no go.work) is
        first made the module its address names (`go mod init github.com/pkg/errors`, then `go mod tidy`
        for its imports), as its users' `go get` would: the go.mod and go.sum setup writes are kept with
        the environment and linked into each test workspace."""
        listed = SetupStep(
            ["go", "list", "-deps", "-test", *_packages(files)], "downloading what the tests build"
        )
        if "go.mod" in files or "go.work" in files:
            return [listed]
        path = self.module_path or "example.com/repository"
        made = "making the repository (it has no go.mod) a module named from its address"
        return [
            SetupStep(["go", "mod", "init", path], made),
            SetupStep(["go", "mod", "tidy"], "resolving the imports of the new module"),
            listed,
        ]

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        return [step.argv for step in self.setup_steps(home, files)]

    def test_command(self, home: str | None) -> list[str]:
        return ["go", "test", "-json", *self.packages]

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        variables = {"GOTOOLCHAIN": "local", "GOCACHE": f"{workspace}/{GO_BUILD_CACHE}"}
        # No VCS stamping: the sandbox's checkout is a worktree whose git directory it cannot see, and Go
        # would fail asking for -buildvcs=false. -mod=vendor: Go's default too from `go 1.14` on; explicit
        # for older go lines.
        variables["GOFLAGS"] = "-mod=vendor -buildvcs=false" if self.vendored else "-buildvcs=false"
        if home:
            variables["GOMODCACHE"] = f"{home}/gomod"
        if not online:
            variables |= {"GOPROXY": "off", "GOSUMDB": "off"}  # go.sum was checked when downloading
        return variables

    def parse(self, output: str, workdir: Path) -> Counts | None:
        return parse_go_json(output) or parse_any(output)


def module_path(url: str) -> str:
    """The module path a repository's address implies, as `go get` would have it: host and path with
    `.git` and any scheme, user or port dropped (`https://github.com/pkg/errors.git` →
    `github.com/pkg/errors`); for a local path, from its first directory named like a host
    (`/srv/git/github.com/pkg/errors.git`), else its last name."""
    address = re.sub(r"^[a-z+]+://", "", url.strip()).removesuffix("/").removesuffix(".git")
    address = re.sub(r"^[^/@]+@", "", address)  # user@
    address = re.sub(r"^([^/:]+):(\d+/)?", r"\1/", address)  # host:port/ and scp-like host:path
    parts = [part for part in address.split("/") if part]
    for index, part in enumerate(parts):
        if "." in part and not part.startswith(".") and index < len(parts) - 1:
            return "/".join(parts[index:])
    return parts[-1] if parts else ""


def _packages(files: DependencyFiles) -> tuple[str, ...]:
    """`./...`, or with a go.work one `./<dir>/...` per module it uses inside the repository: Go 1.19's
    `./...` at a workspace root without a module of its own matches nothing."""
    work = files.get("go.work")
    if work is None:
        return _ALL
    text = _COMMENT.sub("", _text(work))
    dirs = [d for block in _USE_BLOCK.finditer(text) for d in block.group(1).split()]
    dirs += [line.group(1) for line in _USE_LINE.finditer(text)]
    patterns: list[str] = []
    for raw in dirs:
        path = posixpath.normpath(raw.strip('"`'))
        if path.startswith(("/", "..")):
            continue  # outside the repository
        patterns.append("./..." if path == "." else f"./{path}/...")
    return tuple(dict.fromkeys(patterns)) or _ALL


def _vendored(files: DependencyFiles) -> bool:
    return VENDORED in files and "go.mod" in files and "go.work" not in files


def _installed(version: str) -> Version | None:
    """`go version go1.19.8 linux/amd64` as (1, 19, 8)."""
    match = _INSTALLED.search(version)
    return _version(match) if match else None


def _version(match: re.Match[str]) -> Version:
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def _text(content: bytes) -> str:
    return content.decode(errors="replace")
