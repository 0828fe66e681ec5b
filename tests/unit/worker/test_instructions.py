"""Which of a repository's instruction files reach the model, in what order, within what budget."""

from __future__ import annotations

from pathlib import Path

from service_feature.worker.agent import system_prompt
from service_feature.worker.instructions import instruction_paths, read_instructions


def _repository(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


def test_the_nearest_agents_file_to_each_target_wins(tmp_path: Path) -> None:
    root = _repository(
        tmp_path,
        {
            "AGENTS.md": "root rules",
            "packages/api/AGENTS.md": "api rules",
            "packages/api/src/server.py": "",
            "packages/web/src/app.ts": "",
        },
    )
    targets = ["packages/api/src/server.py", "packages/web/src/app.ts", "packages/api/src/other.py"]
    assert instruction_paths(root, targets) == ["packages/api/AGENTS.md", "AGENTS.md"]
    assert instruction_paths(root, []) == ["AGENTS.md"]


def test_every_agents_convention_is_read_root_files_then_cursor_rules(tmp_path: Path) -> None:
    root = _repository(
        tmp_path,
        {
            "AGENTS.md": "a",
            "CLAUDE.md": "b",
            ".github/copilot-instructions.md": "c",
            ".cursorrules": "d",
            ".cursor/rules/style.mdc": "e",
            ".cursor/rules/image.png": "not text",
        },
    )
    instructions = read_instructions(root, [], 10_000)
    assert instructions.files == [
        "AGENTS.md",
        "CLAUDE.md",
        ".github/copilot-instructions.md",
        ".cursorrules",
        ".cursor/rules/style.mdc",
    ]
    assert instructions.text.startswith("--- AGENTS.md ---\na\n\n--- CLAUDE.md ---\nb")
    assert instructions.truncated == []


def test_the_budget_cuts_and_says_what_did_not_fit(tmp_path: Path) -> None:
    root = _repository(tmp_path, {"AGENTS.md": "x" * 300, "CLAUDE.md": "never shown"})
    instructions = read_instructions(root, [], 100)
    assert instructions.files == ["AGENTS.md"]
    assert instructions.truncated == ["AGENTS.md", "CLAUDE.md"]
    assert "AGENTS.md cut here" in instructions.text
    assert "never shown" not in instructions.text


def test_a_link_out_of_the_repository_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "host-secret.txt"
    outside.write_text("root:x:0:0")
    root = _repository(tmp_path / "repo", {"CLAUDE.md": "inside"})
    (root / "AGENTS.md").symlink_to(outside)
    instructions = read_instructions(root, [], 10_000)
    assert instructions.files == ["CLAUDE.md"]
    assert "root:x" not in instructions.text


def test_instructions_are_fenced_in_the_system_prompt_before_the_map() -> None:
    prompt = system_prompt("src/app.py", "--- AGENTS.md ---\nStart every file with a licence header.")
    assert prompt.index("<repository_instructions>\n--- AGENTS.md") < prompt.index(
        "<repository_map>\nsrc/app.py"
    )
    assert "Start every file with a licence header." in prompt
    assert system_prompt("", "") == system_prompt("")
