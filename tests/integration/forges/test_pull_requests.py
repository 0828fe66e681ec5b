"""The adapters, built by `open_forge`, opening and looking after pull requests in each forge's format."""

from __future__ import annotations

import pytest

from service_feature.forges.base import Forge, ForgeKind, PullRequestDraft, ThreadComment
from service_feature.forges.registry import open_forge, resolve
from tests.integration.forges.conftest import POLICY, RecordedSleeps
from tests.support.forges import BOT_LOGIN, ForgeServer, GitHubServer

LIST_PATHS = {
    ForgeKind.github: r"/pulls$",
    ForgeKind.gitlab: r"/merge_requests$",
    ForgeKind.gitea: r"/pulls$",
}


def draft_for(
    head: str = "feature/greeting", *, draft: bool = False, **overrides: object
) -> PullRequestDraft:
    fields: dict[str, object] = {
        "head": head,
        "base": "main",
        "title": "Add a greeting",
        "body": "The agent's summary.",
        "draft": draft,
        "labels": ("service-feature", "needs-review"),
    }
    fields.update(overrides)
    return PullRequestDraft(**fields)  # type: ignore[arg-type]


async def test_open_creates_a_labelled_pull_request(
    server: ForgeServer, forge: Forge, repository: str
) -> None:
    opened = await forge.open_pull_request(repository, draft_for())

    assert (opened.number, opened.head, opened.base, opened.state, opened.draft) == (
        1,
        "feature/greeting",
        "main",
        "open",
        False,
    )
    assert opened.url.startswith(server.web_url)
    [pull] = server.pull_requests(repository)
    assert (pull.title, pull.body, pull.head, pull.base) == (
        "Add a greeting",
        "The agent's summary.",
        "feature/greeting",
        "main",
    )
    assert sorted(pull.labels) == ["needs-review", "service-feature"]
    assert set(server.labels(repository)) == {"needs-review", "service-feature"}


async def test_a_draft_is_marked_ready(server: ForgeServer, forge: Forge, repository: str) -> None:
    opened = await forge.open_pull_request(repository, draft_for(draft=True))
    assert opened.draft
    assert server.pull_requests(repository)[0].draft

    ready = await forge.mark_ready(repository, opened)

    assert not ready.draft
    [pull] = server.pull_requests(repository)
    assert not pull.draft
    assert pull.title == "Add a greeting"
    again = await forge.mark_ready(repository, ready)  # already ready: nothing to do
    assert not again.draft


async def test_github_enterprise_marks_ready_through_its_graphql_endpoint(sleeps: RecordedSleeps) -> None:
    async with GitHubServer(enterprise=True) as server:
        server.add_repository("acme/app")
        assert server.api_url.endswith("/api/v3")
        forge = open_forge(server.account(), policy=POLICY, sleep=sleeps)
        try:
            opened = await forge.open_pull_request("acme/app", draft_for(draft=True))
            ready = await forge.mark_ready("acme/app", opened)
        finally:
            await forge.aclose()
    assert not ready.draft
    assert any(r.path == "/api/graphql" for r in server.requests)


async def test_a_second_open_updates_the_same_pull_request(
    server: ForgeServer, forge: Forge, repository: str
) -> None:
    first = await forge.open_pull_request(repository, draft_for(draft=True, labels=("service-feature",)))
    second = await forge.open_pull_request(
        repository, draft_for(draft=True, title="Add a greeting (v2)", body="Redone.", labels=("retried",))
    )

    assert second.number == first.number
    [pull] = server.pull_requests(repository)
    assert pull.title.endswith("Add a greeting (v2)")
    assert pull.body == "Redone."
    assert pull.draft, "a draft stays one until mark_ready"
    assert sorted(pull.labels) == ["retried", "service-feature"]


async def test_find_by_head_sees_open_pull_requests_only(
    server: ForgeServer, forge: Forge, repository: str
) -> None:
    assert await forge.find_pull_request(repository, "feature/greeting") is None
    opened = await forge.open_pull_request(repository, draft_for())
    server.add_pull_request(repository, "someone-else")

    found = await forge.find_pull_request(repository, "feature/greeting")

    assert found is not None
    assert (found.number, found.head) == (opened.number, "feature/greeting")
    await forge.close_pull_request(repository, opened, "Superseded.")
    assert await forge.find_pull_request(repository, "feature/greeting") is None


async def test_find_reads_past_the_first_page(server: ForgeServer, forge: Forge, repository: str) -> None:
    server.max_page_size = 3
    target = server.add_pull_request(repository, "feature/greeting")  # oldest: on the last page
    for index in range(8):
        server.add_pull_request(repository, f"other-{index}")

    found = await forge.find_pull_request(repository, "feature/greeting")

    assert found is not None
    assert found.number == target.number
    lists = [
        r for r in server.requests if r.method == "GET" and r.path.endswith(("/pulls", "/merge_requests"))
    ]
    if server.kind is ForgeKind.gitea:
        assert len(lists) == 3, "Gitea has no head filter: every page is read"
    else:
        assert len(lists) == 1, "GitHub and GitLab filter by head on the server"


async def test_gitea_finds_existing_labels_past_the_first_page(sleeps: RecordedSleeps) -> None:
    from tests.support.forges import GiteaServer

    async with GiteaServer(max_page_size=2) as server:
        server.add_repository("acme/app")
        existing = await _labels_seeded(server, ["a", "b", "c", "d", "service-feature"])
        forge = open_forge(server.account(), policy=POLICY, sleep=sleeps)
        try:
            await forge.open_pull_request("acme/app", draft_for(labels=("service-feature", "new-one")))
        finally:
            await forge.aclose()
        assert server.labels("acme/app") == [*existing, "new-one"]
        assert sorted(server.pull_requests("acme/app")[0].labels) == ["new-one", "service-feature"]


async def _labels_seeded(server: ForgeServer, names: list[str]) -> list[str]:
    import httpx

    async with httpx.AsyncClient(headers={"Authorization": f"token {server.token}"}) as client:
        for name in names:
            response = await client.post(
                f"{server.api_url}/api/v1/repos/acme/app/labels", json={"name": name, "color": "#00ff00"}
            )
            assert response.status_code == 201
    return names


async def test_a_concurrent_open_is_found_and_updated(
    server: ForgeServer, forge: Forge, repository: str
) -> None:
    # Someone opened the pull request from the same head right after the adapter looked.
    server.add_pull_request(repository, "feature/greeting", title="Opened meanwhile")
    server.answer_next([], path=LIST_PATHS[server.kind], method="GET")

    opened = await forge.open_pull_request(repository, draft_for())

    [pull] = server.pull_requests(repository)
    assert opened.number == pull.number
    assert pull.title == "Add a greeting"
    assert server.faults_pending == 0
    creates = [
        r for r in server.requests if r.method == "POST" and r.path.endswith(("/pulls", "/merge_requests"))
    ]
    assert len(creates) == 1


async def test_comment_and_close_with_a_comment(server: ForgeServer, forge: Forge, repository: str) -> None:
    opened = await forge.open_pull_request(repository, draft_for())
    await forge.comment(repository, opened, "Tests pass.")

    await forge.close_pull_request(repository, opened, "Closing: the feature was cancelled.")

    bodies = [c.body for c in server.comments(repository, opened.number)]
    assert bodies == ["Tests pass.", "Closing: the feature was cancelled."]
    assert server.pull_requests(repository)[0].state == "closed"
    writes = [r for r in server.requests if r.method in ("POST", "PATCH", "PUT")]
    assert writes[-2].body == {"body": "Closing: the feature was cancelled."}, (
        "the comment comes before the close"
    )


async def test_reply_lands_in_the_review_thread(server: ForgeServer, forge: Forge, repository: str) -> None:
    opened = await forge.open_pull_request(repository, draft_for())
    thread = server.add_review_comment(
        repository, opened.number, "@feature-bot please rename this", path="src/greeting.py", line=3
    )

    await forge.reply_to_review_comment(repository, opened, thread, "Renamed in the next push.")

    reply = server.comments(repository, opened.number)[-1]
    if server.kind is ForgeKind.gitea:
        # No reply API: a conversation comment quoting the review comment.
        assert not reply.review
        assert "> @feature-bot please rename this" in reply.body
        assert "src/greeting.py" in reply.body
        assert reply.body.endswith("Renamed in the next push.")
    else:
        assert reply.review
        assert reply.thread == thread
        assert reply.body == "Renamed in the next push."


async def test_the_thread_so_far_is_read_back_oldest_first(
    server: ForgeServer, forge: Forge, repository: str
) -> None:
    opened = await forge.open_pull_request(repository, draft_for())
    server.add_review_comment(repository, opened.number, "an unrelated remark", path="README.md", line=1)
    thread = server.add_review_comment(repository, opened.number, "@feature-bot rename this", line=3)
    await forge.reply_to_review_comment(repository, opened, thread, "Renamed.")

    comments = await forge.thread(repository, opened, thread)

    first = ThreadComment("reviewer", "@feature-bot rename this")
    if server.kind is ForgeKind.gitea:
        assert comments == [first]  # no reply threads on Gitea: the comment itself
    else:
        assert comments == [first, ThreadComment(BOT_LOGIN, "Renamed.")]


async def test_the_clone_url_resolves_to_the_servers_account(server: ForgeServer, repository: str) -> None:
    resolved = resolve(server.clone_url(repository), [server.account()])

    assert resolved is not None
    account, path = resolved
    assert (account.kind, path) == (server.kind, repository)


@pytest.mark.parametrize("token_header", ["token", "Bearer"])
async def test_github_accepts_both_authorization_schemes(token_header: str) -> None:
    import httpx

    async with GitHubServer() as server:
        server.add_repository("acme/app")
        async with httpx.AsyncClient() as client:
            response = await client.get(
                f"{server.api_url}/repos/acme/app/pulls",
                headers={"Authorization": f"{token_header} {server.token}"},
            )
            refused = await client.get(
                f"{server.api_url}/repos/acme/app/pulls", headers={"Authorization": "token x"}
            )
    assert response.status_code == 200
    assert refused.status_code == 401
    assert refused.json()["message"] == "Bad credentials"


async def test_the_servers_paginate_the_way_the_client_libraries_read() -> None:
    """GitHub's and GitLab's adapters filter by head on the server, so their lists rarely span pages; the
    servers' pagination is checked here through the libraries themselves."""
    import asyncio

    import gitlab
    import httpx

    from service_feature.forges.github import _GitHubAPI
    from tests.support.forges import GitLabServer

    async with GitHubServer(max_page_size=4) as github:
        github.add_repository("acme/app")
        for index in range(10):
            github.add_pull_request("acme/app", f"branch-{index}")
        async with httpx.AsyncClient() as client:
            api = _GitHubAPI(client, github.token, github.api_url)
            numbers = [p["number"] async for p in api.getiter("/repos/acme/app/pulls?state=open")]
        assert sorted(numbers) == list(range(1, 11))
        assert len([r for r in github.requests if r.path.endswith("/pulls")]) == 3

    async with GitLabServer(max_page_size=4) as gitlab_server:
        gitlab_server.add_repository("acme/platform/app")
        for index in range(10):
            gitlab_server.add_pull_request("acme/platform/app", f"branch-{index}")

        def list_all() -> list[int]:
            gl = gitlab.Gitlab(gitlab_server.api_url, private_token=gitlab_server.token)
            project = gl.projects.get("acme/platform/app", lazy=True)
            return [mr.iid for mr in project.mergerequests.list(state="opened", get_all=True)]

        assert sorted(await asyncio.to_thread(list_all)) == list(range(1, 11))
        pages = [r for r in gitlab_server.requests if r.path.endswith("/merge_requests")]
        assert len(pages) == 3
