"""The dashboard over ASGI: sign-in and its cookie, CSRF refusals, who sees which button, escaping of
everything that came from a repository or a model, and the kill switch's banner."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service_feature.auth import SESSION_COOKIE, IssuedKey, Role, issue_key
from service_feature.config import GatewaySettings
from service_feature.gateway.dashboard import render
from service_feature.gateway.routes import feature_router
from service_feature.http import create_app
from service_feature.killswitch import KillSwitch
from service_feature.store import Database, upgrade
from service_feature.store.features import find_feature
from service_feature.store.outbox import OutboxRelay
from tests.e2e.browser.hostile import DIFF, IMAGE, add_hostile_feature
from tests.support.bus import InMemoryBus


@dataclass
class Dashboard:
    database: Database
    switch: KillSwitch
    keys: dict[Role, IssuedKey]
    app: httpx.ASGITransport

    def client(self, base_url: str = "http://testserver") -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.app, base_url=base_url)

    @asynccontextmanager
    async def signed_in(self, role: Role) -> AsyncIterator[httpx.AsyncClient]:
        async with self.client() as client:
            response = await sign_in(client, self.keys[role].secret)
            assert response.status_code == 303, response.text
            yield client


@pytest.fixture
async def dashboard(tmp_path: Path) -> AsyncIterator[Dashboard]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'dashboard.db'}")
    await upgrade(database.engine)
    bus = InMemoryBus()
    switch = KillSwitch(database, bus)
    await switch.start()
    relay = OutboxRelay(database, bus)
    router = feature_router(GatewaySettings(), database, relay, bus=bus, switch=switch)
    app = create_app("gateway", {}, [router])
    keys = {role: await issue_key(database, name=f"{role.value} key", role=role) for role in Role}
    try:
        yield Dashboard(database, switch, keys, httpx.ASGITransport(app=app))
    finally:
        await switch.stop()
        await database.close()


def form_token(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} in the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    page = await client.get("/sign-in")
    token = form_token(page.text, "sign_in_token")
    return await client.post("/sign-in", data={"sign_in_token": token, "api_key": key})


async def add_feature(
    database: Database, execution_id: str, submitted_by: str, status: str = "awaiting_approval"
) -> None:
    await add_hostile_feature(database, execution_id, submitted_by, status)


async def status_of(database: Database, execution_id: str) -> str:
    async with database.transaction() as session:
        feature = await find_feature(session, execution_id)
    assert feature is not None
    return feature.status


# -- sign-in and the cookie ------------------------------------------------------------------------------


async def test_a_wrong_key_is_refused_and_pages_need_a_session(dashboard: Dashboard) -> None:
    async with dashboard.client() as client:
        assert (await client.get("/")).headers["location"] == "/sign-in"
        refused = await sign_in(client, "sf_not-a-key")
        assert refused.status_code == 401
        assert "unknown or revoked" in refused.text
        assert SESSION_COOKIE not in client.cookies


async def test_the_session_cookie_is_httponly_strict_and_secure_over_https(dashboard: Dashboard) -> None:
    for base_url, secure in (("http://testserver", False), ("https://testserver", True)):
        async with dashboard.client(base_url) as client:
            response = await sign_in(client, dashboard.keys[Role.reader].secret)
            cookie = next(
                v for k, v in response.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v
            )
            assert "HttpOnly" in cookie
            assert "SameSite=strict" in cookie
            assert ("Secure" in cookie) is secure
            assert response.headers["location"] == "/"


async def test_sign_in_needs_its_form_token(dashboard: Dashboard) -> None:
    async with dashboard.client() as client:
        response = await client.post("/sign-in", data={"api_key": dashboard.keys[Role.admin].secret})
        assert response.status_code == 403
        assert SESSION_COOKIE not in client.cookies


async def test_sign_out_ends_the_session(dashboard: Dashboard) -> None:
    async with dashboard.signed_in(Role.reader) as client:
        home = await client.get("/")
        assert home.status_code == 200
        out = await client.post("/sign-out", data={"csrf_token": form_token(home.text, "csrf_token")})
        assert out.headers["location"] == "/sign-in"
        assert (await client.get("/")).headers["location"] == "/sign-in"


# -- the JSON API and the cookie -------------------------------------------------------------------------


async def test_the_cookie_reads_the_api_but_never_writes(dashboard: Dashboard) -> None:
    admin = dashboard.keys[Role.admin]
    await add_feature(dashboard.database, "held", admin.id)
    async with dashboard.signed_in(Role.admin) as client:
        assert (await client.get("/api/v1/features/held")).status_code == 200
        refused = await client.post("/api/v1/features/held/reject", json={"reason": "forged"})
        assert refused.status_code == 401
        assert (await client.post("/api/v1/killswitch/engage", json={"reason": "forged"})).status_code == 401
    assert await status_of(dashboard.database, "held") == "awaiting_approval"
    assert not dashboard.switch.engaged


async def test_bearer_clients_are_unchanged(dashboard: Dashboard) -> None:
    async with dashboard.client() as client:
        assert (await client.get("/api/v1/features")).status_code == 401
        headers = {"Authorization": f"Bearer {dashboard.keys[Role.reader].secret}"}
        assert (await client.get("/api/v1/features", headers=headers)).status_code == 200
        client.cookies.set(SESSION_COOKIE, "nonce.sf_wrong")
        assert (await client.get("/api/v1/features", headers=headers)).status_code == 200
        assert (await client.get("/api/v1/features")).status_code == 401
        client.cookies.set(SESSION_COOKIE, dashboard.keys[Role.reader].secret)  # no nonce: malformed
        assert (await client.get("/api/v1/features")).status_code == 401
        assert (await client.get("/")).headers["location"] == "/sign-in"


# -- CSRF ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "0" * 64])
async def test_forms_without_the_csrf_token_are_refused(dashboard: Dashboard, token: str | None) -> None:
    admin = dashboard.keys[Role.admin]
    await add_feature(dashboard.database, "held", admin.id)
    async with dashboard.signed_in(Role.admin) as client:
        form = {"reason": "looks fine"} | ({"csrf_token": token} if token is not None else {})
        for action in ("approve", "reject", "cancel"):
            response = await client.post(f"/features/held/{action}", data=form)
            assert response.status_code == 403, action
            assert "CSRF" in response.text
        engage = await client.post("/kill-switch/engage", data=form)
        assert engage.status_code == 403
    assert await status_of(dashboard.database, "held") == "awaiting_approval"
    assert not dashboard.switch.engaged


async def test_a_token_of_another_session_is_refused(dashboard: Dashboard) -> None:
    await add_feature(dashboard.database, "held", dashboard.keys[Role.admin].id)
    async with dashboard.signed_in(Role.admin) as first, dashboard.signed_in(Role.admin) as second:
        stale = form_token((await first.get("/features/held")).text, "csrf_token")
        response = await second.post("/features/held/approve", data={"csrf_token": stale})
        assert response.status_code == 403


async def test_approve_and_reject_with_the_token(dashboard: Dashboard) -> None:
    admin = dashboard.keys[Role.admin]
    await add_feature(dashboard.database, "held1", admin.id)
    await add_feature(dashboard.database, "held2", admin.id)
    async with dashboard.signed_in(Role.admin) as client:
        token = form_token((await client.get("/features/held1")).text, "csrf_token")
        approved = await client.post("/features/held1/approve", data={"csrf_token": token, "reason": "ok"})
        assert approved.headers["location"] == "/features/held1"
        no_reason = await client.post("/features/held2/reject", data={"csrf_token": token, "reason": " "})
        assert no_reason.status_code == 422
        rejected = await client.post("/features/held2/reject", data={"csrf_token": token, "reason": "no"})
        assert rejected.status_code == 303
        again = await client.post("/features/held2/approve", data={"csrf_token": token})
        assert again.status_code == 409
    assert await status_of(dashboard.database, "held1") == "delivering"
    assert await status_of(dashboard.database, "held2") == "rejected"


# -- who sees which button -------------------------------------------------------------------------------


async def test_buttons_follow_the_api_rules(dashboard: Dashboard) -> None:
    submitter = dashboard.keys[Role.submitter]
    await add_feature(dashboard.database, "held", submitter.id)
    await add_feature(dashboard.database, "running", submitter.id, status="testing")
    seen: dict[Role, tuple[str, str]] = {}
    for role in Role:
        async with dashboard.signed_in(role) as client:
            seen[role] = (
                (await client.get("/features/held")).text,
                (await client.get("/features/running")).text,
            )
    admin_held, admin_running = seen[Role.admin]
    assert 'id="approve"' in admin_held
    assert 'id="reject"' in admin_held
    assert 'id="cancel"' in admin_running
    reader_held, reader_running = seen[Role.reader]
    assert 'id="approve"' not in reader_held
    assert 'id="cancel"' not in reader_running
    own_held, own_running = seen[Role.submitter]
    assert 'id="approve"' not in own_held
    assert 'id="cancel"' in own_held
    assert 'id="cancel"' in own_running
    async with dashboard.signed_in(Role.reader) as reader:
        token = form_token((await reader.get("/features/held")).text, "csrf_token")
        refused = await reader.post("/features/held/approve", data={"csrf_token": token})
        assert refused.status_code == 403
        assert (await reader.post("/features/running/cancel", data={"csrf_token": token})).status_code == 403
    assert await status_of(dashboard.database, "held") == "awaiting_approval"


async def test_another_submitters_feature_is_not_found(dashboard: Dashboard) -> None:
    await add_feature(dashboard.database, "theirs", dashboard.keys[Role.admin].id)
    async with dashboard.signed_in(Role.submitter) as client:
        assert (await client.get("/features/theirs")).status_code == 404
        assert 'id="row-theirs"' not in (await client.get("/")).text


# -- escaping and headers --------------------------------------------------------------------------------


async def test_repository_and_model_text_is_escaped(dashboard: Dashboard) -> None:
    await add_feature(dashboard.database, "hostile", dashboard.keys[Role.admin].id)
    async with dashboard.signed_in(Role.admin) as client:
        pages = [await client.get("/features/hostile"), await client.get("/")]
    for response in pages:
        assert response.status_code == 200
        assert "<script>alert" not in response.text
        assert "<img src=x" not in response.text
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
    feature = pages[0].text
    assert "&lt;script&gt;" in feature
    assert "still failing" in feature
    assert "broken" in feature
    assert "fixed" in feature
    assert ".py</span>" in feature
    assert ":7" in feature
    assert "120 in · 30 out" in feature
    assert "<script" not in feature.replace(
        '<script src="/dashboard/static/dashboard.js" defer></script>', ""
    )


def test_only_http_links_are_made() -> None:
    assert render.safe_link("https://example.com/pr/1") == "https://example.com/pr/1"
    assert render.safe_link("javascript:alert(1)") is None
    assert render.safe_link(None) is None


def test_the_diff_is_split_per_file() -> None:
    diff = DIFF + "diff --git a/b.txt b/b.txt\n--- a/b.txt\n+++ b/b.txt\n@@ -1 +1 @@\n-a\n+b\n"
    files = render.diff_files(diff)
    assert [f.name for f in files] == [f"{IMAGE}.py", "b.txt"]
    assert (files[1].added, files[1].removed) == (1, 1)
    assert "<script>" not in files[0].html


async def test_static_files_are_served_and_nothing_else(dashboard: Dashboard) -> None:
    async with dashboard.client() as client:
        assert (await client.get("/dashboard/static/dashboard.js")).status_code == 200
        assert (await client.get("/dashboard/static/pygments.css")).status_code == 200
        assert (await client.get("/dashboard/static/..%2Fpages.py")).status_code == 404
        assert (await client.get("/dashboard/static/__init__.py")).status_code == 404


# -- the kill switch -------------------------------------------------------------------------------------


async def test_the_kill_switch_banner_and_its_roles(dashboard: Dashboard) -> None:
    async with dashboard.signed_in(Role.reader) as reader:
        page = await reader.get("/kill-switch")
        assert 'id="engage"' not in page.text
        token = form_token(page.text, "csrf_token")
        assert (
            await reader.post("/kill-switch/engage", data={"csrf_token": token, "reason": "x"})
        ).status_code == 403
    async with dashboard.signed_in(Role.admin) as admin:
        token = form_token((await admin.get("/kill-switch")).text, "csrf_token")
        engaged = await admin.post(
            "/kill-switch/engage", data={"csrf_token": token, "reason": "bad <b>day</b>"}
        )
        assert engaged.headers["location"] == "/kill-switch"
        home = (await admin.get("/")).text
        assert "Kill switch engaged" in home
        assert "bad &lt;b&gt;day&lt;/b&gt;" in home
        async with dashboard.signed_in(Role.submitter) as submitter:
            theirs = (await submitter.get("/")).text
            assert "Kill switch engaged" in theirs
            assert "bad &lt;b&gt;" not in theirs
            assert (await submitter.get("/kill-switch")).status_code == 403
        await admin.post("/kill-switch/release", data={"csrf_token": token, "reason": "fine again"})
        assert "Kill switch engaged" not in (await admin.get("/")).text
        audit = (await admin.get("/kill-switch")).text
        assert "fine again" in audit
        assert "bad &lt;b&gt;day&lt;/b&gt;" in audit


async def test_search_and_status_filter(dashboard: Dashboard) -> None:
    admin = dashboard.keys[Role.admin].id
    await add_feature(dashboard.database, "alpha", admin)
    await add_feature(dashboard.database, "beta_1", admin, status="delivered")
    async with dashboard.signed_in(Role.reader) as client:
        assert 'id="row-alpha"' not in (await client.get("/", params={"q": "beta"})).text
        assert 'id="row-beta_1"' in (await client.get("/", params={"q": "BETA"})).text
        held = (await client.get("/", params={"status": "awaiting_approval"})).text
        assert 'id="row-alpha"' in held
        assert 'id="row-beta_1"' not in held
        assert 'id="row-' not in (await client.get("/", params={"q": "%"})).text  # a literal, not a LIKE
