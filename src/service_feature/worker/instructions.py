"""The repository's own instructions for coding agents, read at the base commit.

Teams write down how their repository wants to be worked on, in files each agent of theirs reads:
`AGENTS.md` (the nearest one to a file being changed wins, so a package can refine the root's), `CLAUDE.md`,
`.github/copilot-instructions.md`, and Cursor's `.cursorrules` / `.cursor/rules/*`. They reach the model as
repository content, fenced like other untrusted text, within a character budget; what did not fit is named.
They never change the platform's own test command, limits or rules.

Only regular files inside the repository are read: a link pointing elsewhere (`AGENTS.md -> /etc/passwd`)
is skipped, so instructions cannot become a way to read the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

AGENTS_FILE = "AGENTS.md"
ROOT_FILES = ("CLAUDE.md", ".github/copilot-instructions.md", ".cursorrules")
CURSOR_RULES_DIR = ".cursor/rules"
_CURSOR_SUFFIXES = (".md", ".mdc", ".txt")
_MAX_FILE_BYTES = 256 * 1024  # read at most this much of one file; the budget cuts further


@dataclass(frozen=True)
class Instructions:
    """The instructions as the model sees them, and what they were made of."""

    text: str = ""
    files: list[str] = field(default_factory=list)  # repository paths, in the order given
    truncated: list[str] = field(default_factory=list)  # files cut short or left out by the budget

    def describe(self) -> dict[str, list[str]]:
        """For the transcript: which files reached the model, and which did not fit."""
        return {"files": self.files, "truncated": self.truncated}


def read_instructions(root: Path, target_files: Sequence[str], budget_chars: int) -> Instructions:
    """The instruction files of the repository at `root` for a change to `target_files`, within
    `budget_chars` characters in all."""
    text_parts: list[str] = []
    used, files, truncated = 0, [], []
    for path in instruction_paths(root, target_files):
        content = _read_inside(root, path)
        if content is None or not content.strip():
            continue
        room = budget_chars - used
        if room <= 0:
            truncated.append(path)
            continue
        if len(content) > room:
            content = (
                content[:room]
                + f"\n[… {path} cut here: the instructions' budget is {budget_chars} characters]"
            )
            truncated.append(path)
        text_parts.append(f"--- {path} ---\n{content.strip()}")
        used += len(content)
        files.append(path)
    return Instructions("\n\n".join(text_parts), files, truncated)


def instruction_paths(root: Path, target_files: Sequence[str]) -> list[str]:
    """Which instruction files apply, most general first: the AGENTS.md nearest to each target (the root's
    when there are no targets), then the other agents' files at the root, then Cursor's rules."""
    paths = _unique(_nearest_agents_file(root, target) for target in (target_files or [""]))
    paths += [name for name in ROOT_FILES if (root / name).is_file()]
    rules = root / CURSOR_RULES_DIR
    if rules.is_dir() and not rules.is_symlink():
        paths += sorted(
            str(PurePosixPath(CURSOR_RULES_DIR) / entry.name)
            for entry in rules.iterdir()
            if entry.suffix in _CURSOR_SUFFIXES and entry.is_file()
        )
    return paths


def _nearest_agents_file(root: Path, target: str) -> str | None:
    """The AGENTS.md in the target's folder or the closest folder above it, up to the root."""
    folder = PurePosixPath(target).parent if target else PurePosixPath(".")
    for candidate in (folder, *folder.parents):
        path = PurePosixPath(candidate) / AGENTS_FILE
        if (root / path).is_file():
            return str(path)
    return None


def _unique(paths: Iterable[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for path in paths:
        if path is not None:
            seen.setdefault(path, None)
    return list(seen)


def _read_inside(root: Path, path: str) -> str | None:
    """The file's text, if it is a regular file inside the repository (links included, if they stay in)."""
    resolved_root = root.resolve()
    try:
        resolved = (root / path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(resolved_root) or not resolved.is_file():
        return None
    with resolved.open("rb") as handle:
        return handle.read(_MAX_FILE_BYTES).decode("utf-8", errors="replace")
