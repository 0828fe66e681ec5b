"""Helpers of the dashboard's browser tests: pages with their dialogs recorded, sign-in, screenshots, and
the embedded platform with the browser's pages closed before it stops."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Dialog, Page, expect

from tests.support.platform import PlatformClient, running_platform

CHROMIUM = Path(os.environ.get("SF_CHROMIUM", "/usr/bin/chromium"))
# Where the tests leave their screenshots: a test-artifacts folder (CI keeps it), or the README's own with
# `make screenshots` (SF_SCREENSHOT_DIR=docs/screenshots), so an ordinary test run leaves the docs alone.
SCREENSHOTS = Path(
    os.environ.get("SF_SCREENSHOT_DIR")
    or Path(__file__).resolve().parents[3] / ".test-artifacts" / "screenshots"
)
# Generous: the machine may be busy with the rest of the suite.
WAIT_MS = 90_000
expect.set_options(timeout=WAIT_MS)


class Dialogs(list[str]):
    """Every JavaScript dialog a page opened (an XSS would): their messages."""


async def new_page(browser: Browser, *, width: int = 1280, height: int = 900) -> tuple[Page, Dialogs]:
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    dialogs = Dialogs()

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    return page, dialogs


async def sign_in(page: Page, base_url: str, key: str) -> None:
    await page.goto(f"{base_url}/sign-in")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Features", exact=True)).to_be_visible(timeout=WAIT_MS)


async def screenshot(page: Page, name: str) -> None:
    """A full-page screenshot in SCREENSHOTS, under a fixed name the docs refer to."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, animations="disabled")


@asynccontextmanager
async def platform_for(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, **env: str
) -> AsyncIterator[PlatformClient]:
    """The embedded platform (tests.support.platform); the browser's pages are closed before it stops,
    since an open event stream would hold up its shutdown."""
    async with running_platform(tmp_path, monkeypatch, scripts, **env) as api:
        try:
            yield api
        finally:
            for context in browser.contexts:
                await context.close()
