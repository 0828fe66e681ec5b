"""Rust: `cargo fetch` in setup, `cargo test --offline` (a workspace's root tests every member).

A repository that needs a newer Rust than the installed one (Debian's is old) is reported as such before
setup: a Cargo.lock format, an edition or a `rust-version` the installed cargo/rustc does not know.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from service_feature.executor.results import Counts, parse_any, parse_cargo
from service_feature.executor.toolchains.base import (
    DependencyFiles,
    Installation,
    Toolchain,
    command_output,
    host_path,
)
from service_feature.models import Language

_INSTALLED = re.compile(r"\brustc (\d+)\.(\d+)(?:\.(\d+))?")
_LOCK_VERSION = re.compile(r"^version\s*=\s*(\d+)", re.MULTILINE)
# The first Rust release that reads each Cargo.lock format and each edition.
_LOCK_FORMATS = {4: (1, 78, 0)}
_EDITIONS = {"2021": (1, 56, 0), "2024": (1, 85, 0)}

Version = tuple[int, ...]


class RustToolchain(Toolchain):
    """`cargo fetch` into CARGO_HOME in setup; `cargo test --offline` against it. rustup's `cargo` is a proxy
    that needs ~/.rustup, so the active toolchain's sysroot (`rustc --print sysroot`) is what gets bound and
    put on PATH: its real cargo and rustc need nothing else from /root."""

    languages = (Language.rust,)
    binary = "cargo"
    dependency_patterns = ("Cargo.toml", "Cargo.lock")
    version_commands = (("rustc", "--version"), ("cargo", "--version"))
    scratch = ("target",)  # cargo's build output, not the crate's

    def needs_setup(self, files: DependencyFiles) -> bool:
        return "Cargo.toml" in files

    def unsupported(self, files: DependencyFiles) -> str | None:
        match = _INSTALLED.search(self.version)
        if match is None:
            return None
        installed = tuple(int(part or 0) for part in match.groups())
        rust = "rustc {}.{}.{}".format(*installed)
        lock = _LOCK_VERSION.search(files.get("Cargo.lock", b"").decode(errors="replace"))
        if lock and installed < _LOCK_FORMATS.get(int(lock.group(1)), (0,)):
            return f"Cargo.lock is format version {lock.group(1)}, which the executor's {rust} cannot read"
        manifest = _toml(files.get("Cargo.toml", b""))
        for table in (manifest.get("package", {}), manifest.get("workspace", {}).get("package", {})):
            edition = table.get("edition")
            if isinstance(edition, str) and installed < _EDITIONS.get(edition, (0,)):
                return f"Cargo.toml uses edition {edition}, which the executor's {rust} does not know"
            if _numbers(table.get("rust-version")) > installed:
                return (
                    f"Cargo.toml requires Rust {table['rust-version']} (`rust-version`), newer than the "
                    f"executor's {rust}"
                )
        return None

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        return [["cargo", "fetch"]]

    def test_command(self, home: str | None) -> list[str]:
        return ["cargo", "test", "--offline"]

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        variables = {"CARGO_TERM_COLOR": "never"} | ({"CARGO_HOME": f"{home}/cargo"} if home else {})
        return variables if online else variables | {"CARGO_NET_OFFLINE": "true"}

    def parse(self, output: str, workdir: Path) -> Counts | None:
        return parse_cargo(output) or parse_any(output)

    def _locate(self) -> Installation | None:
        rustc = shutil.which("rustc", path=":".join(host_path()))
        if rustc is None or shutil.which("cargo", path=":".join(host_path())) is None:
            return None
        sysroot = Path(command_output([rustc, "--print", "sysroot"]))
        return Installation(bin_dir=sysroot / "bin", root=sysroot) if sysroot.is_dir() else None


def _toml(content: bytes) -> dict[str, Any]:
    try:
        return tomllib.loads(content.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _numbers(version: object) -> Version:
    """`"1.80"` as (1, 80); () for anything else, which no installed version is older than."""
    if not isinstance(version, str) or not re.fullmatch(r"\d+(\.\d+){0,2}", version):
        return ()
    return tuple(int(part) for part in version.split("."))
