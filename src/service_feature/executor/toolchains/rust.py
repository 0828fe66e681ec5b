"""Rust: `cargo fetch` in setup, `cargo test --offline`."""

from __future__ import annotations

import shutil
from pathlib import Path

from service_feature.executor.results import Counts, parse_any, parse_cargo
from service_feature.executor.toolchains.base import (
    DependencyFiles,
    Installation,
    Toolchain,
    command_output,
    host_path,
)
from service_feature.models import Language


class RustToolchain(Toolchain):
    """`cargo fetch` into CARGO_HOME in setup; `cargo test --offline` against it. rustup's `cargo` is a proxy
    that needs ~/.rustup, so the active toolchain's sysroot (`rustc --print sysroot`) is what gets bound and
    put on PATH: its real cargo and rustc need nothing else from /root."""

    languages = (Language.rust,)
    binary = "cargo"
    dependency_patterns = ("Cargo.toml", "Cargo.lock")
    version_commands = (("rustc", "--version"), ("cargo", "--version"))

    def needs_setup(self, files: DependencyFiles) -> bool:
        return "Cargo.toml" in files

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
