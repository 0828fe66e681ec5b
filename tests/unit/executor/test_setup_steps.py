"""EnvironmentCache running a toolchain's setup steps, with a scripted command runner instead of a sandbox:
the failure message names the step and command, a fallback is taken and noted, the download cache is kept
across setups and handed to the toolchain."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from service_feature.executor.overrides import OVERRIDES_FILE
from service_feature.executor.sandbox.base import ProcessResult, Sandbox
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.executor.sandbox.cgroups import CgroupSupport
from service_feature.executor.sandbox.process import ProcessSandbox
from service_feature.executor.sandbox.userns import Identity
from service_feature.executor.setup import (
    EnvironmentCache,
    SetupFailed,
    environment_key,
    walk_files,
    with_writable,
)
from service_feature.executor.toolchains import DependencyFiles, SetupStep, Toolchain, toolchain_for
from service_feature.models import Language

FILES = {"deps.txt": b"x\n"}


class Scripted(Toolchain):
    """A toolchain whose install step falls back to a smaller one."""

    languages = (Language.python,)
    download_cache = "downloads"

    def for_project(self, files: DependencyFiles) -> Scripted:
        return self

    @property
    def version(self) -> str:
        return "scripted 1"

    def setup_steps(self, home: str, files: DependencyFiles) -> list[SetupStep]:
        fallback = SetupStep(["install", "deps"], "installing without the project", "tool install deps")
        return [
            SetupStep(["make", home], "making the environment", "tool make"),
            SetupStep(
                ["install", "all"], "installing everything", "tool install all", fallback, "built less"
            ),
        ]

    def download_variables(self, directory: str) -> dict[str, str]:
        return {"DOWNLOADS": directory}


class Commands:
    """Records each command with its environment; fails those whose argv[1] is in `failing`."""

    def __init__(self, *failing: str) -> None:
        self.failing = set(failing)
        self.ran: list[tuple[list[str], dict[str, str]]] = []

    async def __call__(
        self, sandbox: Sandbox, argv: Sequence[str], workdir: Path, env: Mapping[str, str], phase: str
    ) -> ProcessResult:
        self.ran.append((list(argv), dict(env)))
        failed = argv[1] in self.failing
        return ProcessResult(1 if failed else 0, f"output of {argv[1]}\nNo solution found", 0.1)


def checkout_in(path: Path) -> contextlib.AbstractAsyncContextManager[Path]:
    @contextlib.asynccontextmanager
    async def checkout() -> AsyncIterator[Path]:
        path.mkdir(exist_ok=True)
        yield path

    return checkout()


async def test_a_failed_step_with_a_fallback_is_noted_and_the_downloads_are_kept(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "cache", ProcessSandbox())
    commands = Commands("all")

    environment = await cache.environment(Scripted(), FILES, lambda: checkout_in(tmp_path / "w"), commands)

    assert [argv[1] for argv, _ in commands.ran] == [
        str(tmp_path / "w" / ".service-feature-env"),
        "all",
        "deps",
    ]
    downloads = commands.ran[0][1]["DOWNLOADS"]
    assert downloads == str(tmp_path / "cache" / "downloads" / "downloads")
    assert Path(downloads).is_dir()
    assert environment.notes[0].startswith("built less\ninstalling everything: `tool install all` failed")
    assert environment.describe()["setup"] == [
        "making the environment: tool make",
        "installing everything: tool install all",
    ]


async def test_when_the_fallback_fails_too_both_failures_are_reported(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "cache", ProcessSandbox())

    with pytest.raises(SetupFailed) as raised:
        await cache.environment(
            Scripted(), FILES, lambda: checkout_in(tmp_path / "w"), Commands("all", "deps")
        )

    message = str(raised.value)
    assert message.startswith("installing everything: `tool install all` failed (exit 1):\noutput of all")
    assert "then installing without the project: `tool install deps` failed (exit 1)" in message


async def test_a_step_without_fallback_fails_with_its_command_and_output(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "cache", ProcessSandbox())
    home = str(tmp_path / "w" / ".service-feature-env")

    with pytest.raises(SetupFailed) as raised:
        await cache.environment(Scripted(), FILES, lambda: checkout_in(tmp_path / "w"), Commands(home))

    assert str(raised.value) == (
        f"making the environment: `tool make` failed (exit 1):\noutput of {home}\nNo solution found"
    )


def test_writable_paths_are_for_bwrap_only(tmp_path: Path) -> None:
    process = ProcessSandbox()
    no_cgroups = CgroupSupport(memory=None, pids=None, kill_parent=None)
    bwrap = BwrapSandbox(
        readonly_paths=[], cgroup_support=no_cgroups, bwrap="true", identity=Identity(4242, 4242)
    )

    writable = with_writable(bwrap, [tmp_path])

    assert with_writable(process, [tmp_path]) is process
    assert isinstance(writable, BwrapSandbox)
    assert writable.describe()["writable_paths"] == [str(tmp_path)]
    assert writable.with_readonly([tmp_path / "x"]).describe()["writable_paths"] == [str(tmp_path)]
    assert bwrap.describe()["writable_paths"] == []


async def test_the_repository_setup_commands_run_after_the_detected_ones_and_key_the_environment(
    tmp_path: Path,
) -> None:
    cache = EnvironmentCache(tmp_path / "cache", ProcessSandbox())
    commands = Commands()
    files = {**FILES, OVERRIDES_FILE: b"setup:\n  - make generated\n"}

    environment = await cache.environment(Scripted(), files, lambda: checkout_in(tmp_path / "w"), commands)
    plain = await cache.environment(Scripted(), FILES, lambda: checkout_in(tmp_path / "v"), Commands())

    assert commands.ran[-1][0] == ["sh", "-c", "make generated"]
    assert environment.setup[-1] == f"the repository's setup command ({OVERRIDES_FILE}): make generated"
    assert environment.key != plain.key


async def test_an_invalid_overrides_file_is_a_setup_failure(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path / "cache", ProcessSandbox())
    files = {**FILES, OVERRIDES_FILE: b"setup: [\n"}

    with pytest.raises(SetupFailed, match=f"{OVERRIDES_FILE} is not valid"):
        await cache.environment(Scripted(), files, lambda: checkout_in(tmp_path / "w"), Commands())


class Rescripted(Scripted):
    """The same toolchain version, installing differently."""

    def setup_steps(self, home: str, files: DependencyFiles) -> list[SetupStep]:
        return [SetupStep(["install", "differently"])]


def test_the_key_follows_the_setup_commands_and_bare_python_projects_share_one() -> None:
    python = toolchain_for(Language.python)
    black_only = {"pyproject.toml": b"[tool.black]\nline-length = 100\n"}

    assert environment_key(Scripted(), FILES) != environment_key(Rescripted(), FILES)
    assert environment_key(python.for_project({}), {}) == environment_key(
        python.for_project(black_only), black_only
    )
    requirements = {"requirements.txt": b"six\n"}
    assert environment_key(python.for_project(requirements), requirements) != environment_key(
        python.for_project({}), {}
    )


class Generating(Commands):
    """Setup that writes into the checkout, as an in-place build does: a compiled extension and a version
    file beside the code, build intermediates, bytecode."""

    async def __call__(
        self, sandbox: Sandbox, argv: Sequence[str], workdir: Path, env: Mapping[str, str], phase: str
    ) -> ProcessResult:
        for name in ("pkg/_ext.so", "pkg/version.py", "build/temp/ext.o", "pkg/__pycache__/a.pyc"):
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            (workdir / name).write_text(f"made by {argv[1]}")
        return await super().__call__(sandbox, argv, workdir, env, phase)


def a_checkout(path: Path) -> Path:
    (path / "pkg").mkdir(parents=True)
    (path / "pkg" / "__init__.py").write_text("")
    return path


async def test_files_setup_generates_in_the_checkout_are_linked_into_each_test_workspace(
    tmp_path: Path,
) -> None:
    cache = EnvironmentCache(tmp_path / "cache", ProcessSandbox())
    setup_checkout = a_checkout(tmp_path / "w")

    environment = await cache.environment(
        Scripted(), FILES, lambda: checkout_in(setup_checkout), Generating()
    )
    fresh, patched = a_checkout(tmp_path / "fresh"), a_checkout(tmp_path / "patched")
    (patched / "pkg" / "version.py").write_text("the patch's own")
    environment.link_into(fresh)
    environment.link_into(patched)
    reread = await cache.environment(Scripted(), FILES, lambda: checkout_in(tmp_path / "x"), Commands())

    assert environment.generated == ("pkg/_ext.so", "pkg/version.py")
    assert reread.generated == environment.generated
    assert reread.cached
    assert (fresh / "pkg" / "_ext.so").is_symlink()
    assert (fresh / "pkg" / "_ext.so").read_text() == "made by all"
    assert not (fresh / "build").exists()
    assert not (fresh / "pkg" / "__pycache__").exists()
    assert (patched / "pkg" / "version.py").read_text() == "the patch's own"
    assert environment.describe()["generated_files"] == 2


def test_the_workspace_walk_survives_link_loops_and_vanishing_directories(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "out").symlink_to("/", target_is_directory=True)
    (tmp_path / "gone" / "deeper").mkdir(parents=True)
    (tmp_path / "gone" / "deeper" / "f").write_text("")
    (tmp_path / "kept" / "f").parent.mkdir()
    (tmp_path / "kept" / "f").write_text("")

    def remove_gone(path: str) -> bool:
        """A directory removed between being listed and being read (a test's cleanup, racing)."""
        if path == "gone":
            shutil.rmtree(tmp_path / "gone" / "deeper")
        return False

    assert sorted(walk_files(tmp_path, remove_gone)) == ["kept/f", "loop", "out"]
    assert sorted(walk_files(tmp_path, lambda path: path == "kept")) == ["loop", "out"]
