"""Fixtures for the reviewer's tests: real patches made with git in a temporary directory."""

from __future__ import annotations

from itertools import count
from pathlib import Path

import pytest

from tests.support.review_corpus import Checkouts, Files, MakePatch, build


@pytest.fixture
def make_patch(tmp_path: Path) -> MakePatch:
    """Build a patch from base files and patched files; each call gets its own directory."""
    numbers = count()

    def make(base: Files, patch: Files) -> Checkouts:
        return build(base, patch, tmp_path / f"patch-{next(numbers)}")

    return make
