"""A real browser for the dashboard's tests: Debian's Chromium driven by Playwright. Without it the tests
skip, unless SF_REQUIRE_BROWSER=1 (`make test`): then they fail."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from tests.e2e.browser.support import CHROMIUM


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.is_file():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("SF_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SF_REQUIRE_BROWSER=1 but {message}")
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        await launched.close()
