"""The dashboard in a real browser against the embedded platform: sign-in, a feature followed live to
delivery, a held feature approved and another rejected, a running one cancelled, the kill switch engaged
and released, and markup from a repository or a model shown as text."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from service_feature.auth import Role
from tests.e2e.browser.hostile import IMAGE, SCRIPT, add_hostile_feature
from tests.e2e.browser.support import WAIT_MS, new_page, platform_for, screenshot, sign_in
from tests.support.platform import (
    FINAL,
    GREETING,
    GREETING_TEST,
    call,
    feature_request,
    greeting_turns,
    turn,
    wait_for,
    write_script,
)

PYTEST = "python -m pytest -q -p no:cacheprovider"
# Slow on the patched run only, so the feature sits in `testing` until it is cancelled.
# The patched run outlasts any wait of the test: only the cancel ends it.
SLOW_PATCHED_RUN = f"if [ -f src/demo_app/greeting.py ]; then sleep 900; fi; {PYTEST}"


def held_turns() -> list[dict[str, object]]:
    """The greeting plus an edit outside `target_files`: with MAX_RISK_SCORE=0 the reviewer holds it."""
    return [
        turn(
            call("write_file", path="src/demo_app/greeting.py", content=GREETING),
            call("write_file", path="tests/test_greeting.py", content=GREETING_TEST),
            call("write_file", path="README.md", content="# demo-app\n\nNow with greetings.\n"),
        ),
        turn(call("finish", summary="added greet() and documented it")),
    ]


async def test_sign_in_and_follow_a_feature_live_to_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path, browser: Browser
) -> None:
    write_script(scripts, greeting_turns(), latency_ms=300)
    async with platform_for(browser, tmp_path, monkeypatch, scripts) as api:
        base = str(api.base_url).rstrip("/")
        page, dialogs = await new_page(browser)
        streams: list[tuple[str, int]] = []
        page.on("response", lambda r: streams.append((r.url, r.status)) if "/stream" in r.url else None)
        await page.goto(f"{base}/")
        await expect(page).to_have_url(f"{base}/sign-in")
        await page.get_by_label("API key").fill("sf_wrong")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
        await sign_in(page, base, api.key)

        assert (await api.post("/api/v1/features", json=feature_request(origin, "live1"))).status_code == 202
        row = page.locator("#row-live1")
        await expect(row).to_be_visible(timeout=WAIT_MS)  # appears without a reload
        await row.get_by_role("link").click()
        await expect(page.locator("#feature-status")).to_have_text("delivered", timeout=WAIT_MS)
        await expect(page.locator("#delivered")).to_contain_text("feature/live1")
        await expect(page.locator(".diff-file summary").first).to_contain_text("greeting.py")
        await expect(page.locator("#feature-details")).to_contain_text("passed")
        await expect(page.locator(".transcript")).to_contain_text("Turn 1")
        await expect(page.locator("#event-log")).to_contain_text("status.delivered")
        await expect(page.locator("#cancel")).to_have_count(0)
        await screenshot(page, "feature-delivered")
        # Both pages followed the event streams, authenticated by the session cookie.
        assert (f"{base}/api/v1/events/stream", 200) in streams
        assert (f"{base}/api/v1/features/live1/stream", 200) in streams

        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Features").click()
        await expect(page.locator("#row-live1 .status")).to_have_text("delivered")
        await screenshot(page, "features-list")
        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(f"{base}/sign-in")
        assert dialogs == []


async def test_approve_one_held_feature_and_reject_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path, browser: Browser
) -> None:
    write_script(scripts, held_turns())
    async with platform_for(browser, tmp_path, monkeypatch, scripts, MAX_RISK_SCORE="0") as api:
        base = str(api.base_url).rstrip("/")
        for execution_id in ("held1", "held2"):
            await api.post("/api/v1/features", json=feature_request(origin, execution_id))
        for execution_id in ("held1", "held2"):
            assert (await wait_for(api, execution_id, FINAL, timeout=120))["status"] == "awaiting_approval"
        reader = await api.client_as(Role.reader, "a reader")

        watcher, _ = await new_page(browser)
        await sign_in(watcher, base, reader.key)
        await watcher.goto(f"{base}/features/held1")
        await expect(watcher.locator("#feature-status")).to_have_text("awaiting_approval")
        await expect(watcher.locator("#approve")).to_have_count(0)  # an admin's decision

        page, _ = await new_page(browser)
        await sign_in(page, base, api.key)
        await page.goto(f"{base}/features/held1")
        await expect(page.locator("#risk-score")).not_to_have_text("0")
        await expect(page.locator(".findings")).to_contain_text("README.md")
        await screenshot(page, "feature-held")
        await page.get_by_label("Comment (optional)").fill("README change is fine")
        await page.locator("#approve").click()
        await expect(page.locator("#feature-status")).to_have_text("delivered", timeout=WAIT_MS)
        await expect(page.locator("#feature-timeline")).to_contain_text("README change is fine")
        # The reader's open page caught up on its own.
        await expect(watcher.locator("#feature-status")).to_have_text("delivered", timeout=WAIT_MS)

        await page.goto(f"{base}/features/held2")
        await page.locator("#reject").click()  # no reason: the browser keeps the form
        await expect(page.locator("#feature-status")).to_have_text("awaiting_approval")
        await page.get_by_label("Reason for rejecting").fill("no README edits")
        await page.locator("#reject").click()
        await expect(page.locator("#feature-status")).to_have_text("rejected")
        await expect(page.locator("#failure-reason")).to_contain_text("no README edits")
        rejected = (await api.get("/api/v1/features/held2")).json()
        assert rejected["failure_reason"].endswith(": no README edits")


async def test_cancel_a_running_feature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path, browser: Browser
) -> None:
    write_script(scripts, greeting_turns())
    async with platform_for(browser, tmp_path, monkeypatch, scripts) as api:
        base = str(api.base_url).rstrip("/")
        submitter = await api.client_as(Role.submitter, "a submitter")
        request = feature_request(origin, "slow1", test_command=SLOW_PATCHED_RUN)
        assert (await submitter.post("/api/v1/features", json=request)).status_code == 202
        await wait_for(submitter, "slow1", {"testing"}, timeout=120)

        # The executor runs in this process: the list shows a reader its running execution.
        admin, _ = await new_page(browser)
        await sign_in(admin, base, api.key)
        await expect(admin.locator("#executions-list")).to_contain_text("slow1")

        page, _ = await new_page(browser)
        await sign_in(page, base, submitter.key)
        await expect(page.locator("#count-testing dd")).to_have_text("1")
        await expect(page.locator("#executions")).to_be_hidden()  # a reader's API
        await page.goto(f"{base}/features/slow1")
        await expect(page.locator("#approve")).to_have_count(0)
        await page.locator("#cancel").click()
        await expect(page.locator("#feature-status")).to_have_text("cancelled")
        await expect(page.locator("#cancel")).to_have_count(0)
        feature = (await submitter.get("/api/v1/features/slow1")).json()
        assert feature["status"] == "cancelled"
        assert feature["delivered_branch"] is None


async def test_engage_and_release_the_kill_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, browser: Browser
) -> None:
    write_script(scripts, greeting_turns())
    async with platform_for(browser, tmp_path, monkeypatch, scripts) as api:
        base = str(api.base_url).rstrip("/")
        reader = await api.client_as(Role.reader, "a reader")
        watcher, _ = await new_page(browser, width=390, height=844)  # a phone
        await sign_in(watcher, base, reader.key)
        banner = watcher.locator("#kill-switch-banner")
        await expect(banner).to_be_empty()

        page, _ = await new_page(browser)
        await sign_in(page, base, api.key)
        await page.get_by_role("link", name="Kill switch").click()
        await expect(page.locator("#switch-state")).to_have_text("released")
        await page.get_by_label("Reason").fill("provider incident")
        await page.locator("#engage").click()
        await expect(page.locator("#switch-state")).to_have_text("engaged")
        await expect(page.get_by_role("alert")).to_contain_text("provider incident")
        await expect(page.locator(".audit")).to_contain_text("provider incident")
        # Every page shows it, and an open page picks it up without a reload.
        await expect(banner).to_contain_text("Kill switch engaged", timeout=WAIT_MS)
        await expect(banner).to_contain_text("provider incident")
        await screenshot(watcher, "kill-switch-phone")

        await page.get_by_label("Reason").fill("incident over")
        await page.locator("#release").click()
        await expect(page.locator("#switch-state")).to_have_text("released")
        await expect(page.get_by_role("alert")).to_have_count(0)
        await expect(banner).to_be_empty(timeout=WAIT_MS)
        audit = (await api.get("/api/v1/killswitch/audit")).json()
        assert [change["reason"] for change in audit[:2]] == ["incident over", "provider incident"]


async def test_markup_from_a_repository_or_a_model_shows_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, browser: Browser
) -> None:
    write_script(scripts, greeting_turns())
    async with platform_for(browser, tmp_path, monkeypatch, scripts) as api:
        base = str(api.base_url).rstrip("/")
        assert api.platform.database is not None
        await add_hostile_feature(api.platform.database, "hostile1", None)
        page, dialogs = await new_page(browser)
        violations: list[str] = []
        page.on(
            "console",
            lambda message: violations.append(message.text) if "Content Security" in message.text else None,
        )
        await sign_in(page, base, api.key)
        await expect(page.locator("#row-hostile1")).to_contain_text(f"Title {IMAGE}")
        await page.goto(f"{base}/features/hostile1")
        await expect(page.locator("#feature-title")).to_have_text(f"Title {IMAGE}")
        await expect(page.locator(".diff-file .file-name")).to_have_text(f"{IMAGE}.py")
        await expect(page.locator(".diff")).to_contain_text(SCRIPT)
        await expect(page.locator(".transcript pre.text")).to_have_text(SCRIPT)
        await expect(page.locator(".findings")).to_contain_text(f"{IMAGE}.py:7")
        await expect(page.locator(".tests")).to_contain_text(f"test_{IMAGE}")
        await expect(page.locator("main img")).to_have_count(0)
        await expect(page.locator("main script")).to_have_count(0)
        # Give a live refresh the chance to swap the regions in, which must not run anything either.
        await page.wait_for_timeout(3000)
        await expect(page.locator("main img")).to_have_count(0)
        assert dialogs == []
        assert violations == []
