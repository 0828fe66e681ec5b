"""Hostile request fields: branch names (against the real `git check-ref-format`), target files, text."""

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service_feature.models import FeatureRequest, check_branch_name, check_repository_path


def _git_accepts(name: str) -> bool:
    result = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True, cwd="/")
    return result.returncode == 0


def _ours_accepts(name: str) -> bool:
    try:
        check_branch_name(name)
    except ValueError:
        return False
    return True


TRICKY = [
    "main",
    "feature/x",
    "a.lock",
    "a.lock/b",
    "x.lock1",
    ".hidden",
    "a/.b",
    "a..b",
    "a b",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[",
    "a\\b",
    "a/",
    "/a",
    "a//b",
    "a.",
    "x@{y",
    "@",
    "@{-1}",
    "HEAD",
    "-x",
    "héllo",
    "a\x7f",
    "a\tb",
    "refs/heads/x",
    "v1.0",
    "a/b.c/d",
]


@pytest.mark.parametrize("name", TRICKY)
def test_branch_rules_match_git_check_ref_format(name: str) -> None:
    assert _ours_accepts(name) == _git_accepts(name)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="ab./-@{}~^:?*[\\ lock\x01", min_size=1, max_size=12))
def test_branch_rules_match_git_on_generated_names(name: str) -> None:
    assert _ours_accepts(name) == _git_accepts(name)


@pytest.mark.parametrize(("path", "normal"), [("./src//app.py", "src/app.py"), ("a/./b", "a/b")])
def test_target_files_are_normalised(path: str, normal: str) -> None:
    assert check_repository_path(path) == normal


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x", "src/../../x", ".git/config", "a/.git/hooks/x", ".", "./"]
)
def test_target_files_outside_the_repository_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match=r"absolute|leaves|\.git|needs a path"):
        check_repository_path(path)


def _request(**overrides: object) -> dict[str, object]:
    spec = {"title": "t", "language": "python"}
    spec.update(overrides.pop("specification", {}))  # type: ignore[call-overload]
    return {"repository_url": "https://github.com/a/b.git", "specification": spec, **overrides}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"branch": "a..b"}, "branch"),
        ({"specification": {"target_files": ["../../etc/passwd"]}}, "target_files"),
        ({"specification": {"title": "Fix\nSigned-off-by: someone"}}, "title"),
        ({"specification": {"title": "x" * 201}}, "title"),
        ({"specification": {"description": "a\x00b"}}, "description"),
        ({"specification": {"requirements": ["r"] * 101}}, "requirements"),
        ({"repository_url": "https://github.com/a/b.git\nx"}, "repository_url"),
        ({"test_command": "pytest\x00"}, "test_command"),
        ({"repository_url": "https://ghp_token@github.com/a/b.git"}, "repository_url"),
        ({"repository_url": "https://[::1/a.git"}, "repository_url"),
    ],
)
def test_hostile_fields_are_refused(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        FeatureRequest.model_validate(_request(**overrides))
    assert field in str(error.value.errors()[0]["loc"])


def test_a_request_keeps_normalised_target_files() -> None:
    request = FeatureRequest.model_validate(_request(specification={"target_files": ["./src//a.py"]}))
    assert request.specification.target_files == ["src/a.py"]
