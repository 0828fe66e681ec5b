"""Go: modules downloaded in setup, `go test` offline."""

from __future__ import annotations

from pathlib import Path

from service_feature.executor.results import Counts, parse_any, parse_go_json
from service_feature.executor.toolchains.base import GO_BUILD_CACHE, DependencyFiles, Toolchain
from service_feature.models import Language


class GoToolchain(Toolchain):
    """`go mod download` into GOMODCACHE in setup; `go test -json ./...` offline (GOPROXY=off) against it.
    The build cache is per run, in the workspace (Go writes to it during tests; `./...` skips dot dirs)."""

    languages = (Language.go,)
    binary = "go"
    dependency_patterns = ("go.mod", "go.sum", "go.work", "go.work.sum")
    version_commands = (("go", "version"),)

    def needs_setup(self, files: DependencyFiles) -> bool:
        return "go.mod" in files or "go.work" in files

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        return [["go", "mod", "download"]]

    def test_command(self, home: str | None) -> list[str]:
        return ["go", "test", "-json", "./..."]

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        variables = {
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-mod=mod",
            "GOCACHE": f"{workspace}/{GO_BUILD_CACHE}",
        }
        if home:
            variables["GOMODCACHE"] = f"{home}/gomod"
        if not online:
            variables |= {"GOPROXY": "off", "GOSUMDB": "off"}  # go.sum was checked when downloading
        return variables

    def parse(self, output: str, workdir: Path) -> Counts | None:
        return parse_go_json(output) or parse_any(output)
