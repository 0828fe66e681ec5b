"""Fixtures for the reviewer's tests: real patches made with git in a temporary directory."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture
def semgrep_on_path() -> None:
    """Skipped without semgrep, unless SF_REQUIRE_SEMGREP=1 (`make test`, which installs it): then failed."""
    if shutil.which("semgrep") is None:
        if os.environ.get("SF_REQUIRE_SEMGREP") == "1":
            pytest.fail("SF_REQUIRE_SEMGREP=1 but semgrep is not on PATH (`make install` puts it there)")
        pytest.skip("semgrep is not installed")
