"""Local servers that speak GitHub's, GitLab's and Gitea's REST wire formats, for the forge adapters.

No forge is reachable from the test machines, so the adapters are driven through their real client libraries
(gidgethub, python-gitlab, httpx), over real HTTP, against these servers. Each one:

- is a FastAPI app run by uvicorn in a background thread on 127.0.0.1, port chosen by the system (safe
  under xdist); use it as `with GitHubServer() as server:` or `async with GitHubServer() as server:`;
- checks the token the way the forge does (GitHub `Authorization: token|Bearer`, GitLab `PRIVATE-TOKEN` or
  `Authorization: Bearer`, Gitea `Authorization: token|Bearer`) and answers 401 in the forge's format;
- keeps repositories, pull requests (merge requests), labels, comments and review threads in memory,
  paginates lists like the forge (`Link` headers; GitLab's `X-Page`/`X-Next-Page`/`X-Total-Pages` too),
  answers a duplicate open pull request like the forge (GitHub 422, GitLab and Gitea 409);
- injects faults on demand: `server.fail_next(502, times=2)`, `server.fail_next(429, retry_after=7)`,
  `server.rate_limit_next(reset_in=30)` (GitHub's 403 with `x-ratelimit-remaining: 0`), `fail_next(401)`;
- records every request (`server.requests`: method, path, query, headers with the token masked, JSON body).

    with GitLabServer() as server:
        server.add_repository("group/app")
        forge = open_forge(server.account())
        ...
        assert server.pull_requests("group/app")[0].labels == ["feature"]

`server.account()` is the `ForgeAccount` (kind, api_url, token, token_setting, host) pointing at the server;
`server.clone_url("group/app")` a clone URL that `registry.resolve` maps back to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import urlencode

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from service_feature.forges.base import ForgeKind
from service_feature.forges.registry import ForgeAccount

TEST_TOKEN = "forge-test-token-0123456789"
BOT_LOGIN = "feature-bot"
_MASK = "***"


# ------------------------------------------------------------------------------------------- shared state


@dataclass
class FakePull:
    """A pull request (merge request) as the server holds it, in forge-neutral terms."""

    number: int
    title: str
    body: str
    head: str
    base: str
    draft: bool  # GitHub's flag; GitLab and Gitea: derived from the title prefix when read
    state: str  # "open", "closed", "merged"
    labels: list[str] = field(default_factory=list)
    node_id: str = ""


@dataclass
class FakeComment:
    """A comment on a pull request. `review` comments sit on the diff; `thread` names the review thread
    (GitHub: the root comment's id; GitLab: the discussion id; Gitea: the root comment's id)."""

    id: int
    number: int
    body: str
    author: str
    review: bool = False
    thread: str | None = None
    path: str | None = None
    line: int | None = None
    review_id: int | None = None  # Gitea: the review the comment belongs to


@dataclass
class FakeRepository:
    path: str
    default_branch: str = "main"
    pulls: dict[int, FakePull] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # name -> id
    comments: list[FakeComment] = field(default_factory=list)
    reviews: dict[int, int] = field(default_factory=dict)  # Gitea: review id -> pull number


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; token values masked
    body: Any  # decoded JSON, the raw text, or None


@dataclass
class _Fault:
    status: int
    remaining: int
    path: re.Pattern[str] | None
    method: str | None
    headers: dict[str, str]
    message: str | None
    body: Any = None


class _Answer(Exception):
    """Raised by a handler to answer with a status, a JSON body and headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


# ------------------------------------------------------------------------------------------- the plumbing


class ForgeServer:
    """The HTTP plumbing and the state shared by the three forges; subclasses define the wire format."""

    kind: ClassVar[ForgeKind]
    token_setting: ClassVar[str]
    default_page_size: ClassVar[int] = 30

    def __init__(self, *, token: str = TEST_TOKEN, max_page_size: int = 100) -> None:
        self.token = token
        self.max_page_size = max_page_size
        self.requests: list[RecordedRequest] = []
        self._repositories: dict[str, FakeRepository] = {}
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1001)
        self._lock = threading.RLock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = FastAPI(dependencies=[Depends(self._gate)])
        self.app.add_exception_handler(_Answer, self._answer)  # type: ignore[arg-type]
        self.add_routes(self.app)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=type(self).__name__, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running: use it as a context manager")
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}"

    @property
    def api_url(self) -> str:
        """What `ForgeAccount.api_url` holds for this forge."""
        return self.web_url

    def clone_url(self, repository: str) -> str:
        return f"{self.web_url}/{repository}.git"

    def account(self, *, token: str | None = None, token_setting: str | None = None) -> ForgeAccount:
        return ForgeAccount(
            kind=self.kind,
            api_url=self.api_url,
            token=self.token if token is None else token,
            token_setting=token_setting or self.token_setting,
            host=self.host,
        )

    # -- state -----------------------------------------------------------------------------------------------

    def add_repository(self, path: str, default_branch: str = "main") -> None:
        with self._lock:
            self._repositories[path] = FakeRepository(path, default_branch)

    def pull_requests(self, repository: str) -> list[FakePull]:
        """Every pull request of `repository`, oldest first (copies)."""
        with self._lock:
            return [self._snapshot(pull) for pull in self._repositories[repository].pulls.values()]

    def comments(self, repository: str, number: int) -> list[FakeComment]:
        with self._lock:
            return [replace(c) for c in self._repositories[repository].comments if c.number == number]

    def labels(self, repository: str) -> list[str]:
        with self._lock:
            return list(self._repositories[repository].labels)

    def add_pull_request(
        self, repository: str, head: str, *, title: str = "", base: str = "main", state: str = "open"
    ) -> FakePull:
        """A pull request opened by someone else (e.g. to fill pages)."""
        with self._lock:
            pull = self._new_pull(self._repo(repository), head, base, title or head, "", False)
            pull.state = state
            return self._snapshot(pull)

    def add_review_comment(
        self, repository: str, number: int, body: str, *, path: str = "src/app.py", line: int = 1
    ) -> str:
        """A reviewer's comment on the diff; returns the thread id the adapter answers in."""
        with self._lock:
            repo = self._repo(repository)
            comment = FakeComment(
                next(self._ids), number, body, "reviewer", review=True, path=path, line=line
            )
            comment.thread = self.new_thread_id(comment)
            if self.kind is ForgeKind.gitea:
                review_id = next(self._ids)
                repo.reviews[review_id] = number
                comment.review_id = review_id
            repo.comments.append(comment)
            return comment.thread

    def new_thread_id(self, comment: FakeComment) -> str:
        return str(comment.id)

    def _snapshot(self, pull: FakePull) -> FakePull:
        return replace(pull, labels=list(pull.labels))

    def _repo(self, path: str) -> FakeRepository:
        repo = self._repositories.get(path)
        if repo is None:
            raise _Answer(*self.not_found_error())
        return repo

    def _new_pull(
        self, repo: FakeRepository, head: str, base: str, title: str, body: str, draft: bool
    ) -> FakePull:
        number = len(repo.pulls) + 1
        node_id = "PR_" + hashlib.sha1(f"{repo.path}#{number}".encode()).hexdigest()[:16]
        pull = FakePull(number, title, body, head, base, draft, "open", node_id=node_id)
        repo.pulls[number] = pull
        return pull

    def _open_pull_from(self, repo: FakeRepository, head: str) -> FakePull | None:
        return next((p for p in repo.pulls.values() if p.head == head and p.state == "open"), None)

    def _pull(self, repo: FakeRepository, number: int) -> FakePull:
        pull = repo.pulls.get(number)
        if pull is None:
            raise _Answer(*self.not_found_error())
        return pull

    def _label_id(self, repo: FakeRepository, name: str) -> int:
        if name not in repo.labels:
            repo.labels[name] = next(self._ids)
        return repo.labels[name]

    def _add_comment(self, repo: FakeRepository, number: int, body: str, **fields: Any) -> FakeComment:
        self._pull(repo, number)
        comment = FakeComment(next(self._ids), number, body, BOT_LOGIN, **fields)
        repo.comments.append(comment)
        return comment

    # -- faults ----------------------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        path: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next `times` requests (whose path matches the regex `path` and whose method is
        `method`, when given) with `status` in the forge's error format; `retry_after` adds Retry-After."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["retry-after"] = f"{retry_after:g}"
        with self._lock:
            pattern = re.compile(path) if path is not None else None
            self._faults.append(_Fault(status, times, pattern, method, extra, message))

    def answer_next(
        self,
        body: Any,
        *,
        status: int = 200,
        path: str | None = None,
        method: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next matching request(s) with `body` as it is (e.g. an empty list: a pull request
        opened by someone else right after the adapter listed them)."""
        with self._lock:
            pattern = re.compile(path) if path is not None else None
            self._faults.append(_Fault(status, times, pattern, method, {}, None, body))

    @property
    def faults_pending(self) -> int:
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.remaining > 0
                    and (fault.path is None or fault.path.search(path))
                    and (fault.method is None or fault.method == method)
                ):
                    fault.remaining -= 1
                    return fault
        return None

    # -- request handling ------------------------------------------------------------------------------------

    async def _gate(self, request: Request) -> None:
        """Runs before every route: record, inject a fault, check the token."""
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {name.lower(): value for name, value in request.headers.items()}
        for name in ("authorization", "private-token"):
            if name in headers:
                headers[name] = headers[name].replace(self.token, _MASK)
        with self._lock:
            self.requests.append(
                RecordedRequest(request.method, request.url.path, dict(request.query_params), headers, body)
            )
        fault = self._take_fault(request.method, request.url.path)
        if fault is not None and fault.body is not None:
            raise _Answer(fault.status, fault.body, fault.headers)
        if fault is not None:
            status, error, fault_headers = self.fault_error(fault)
            raise _Answer(status, error, fault_headers)
        if self.presented_token(request.headers) != self.token:
            raise _Answer(*self.auth_error())

    async def _answer(self, request: Request, answer: _Answer) -> Response:
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    def paginate(
        self, request: Request, items: Sequence[Any], size_param: str
    ) -> tuple[list[Any], dict[str, str]]:
        """One page of `items` and the headers that lead to the others."""
        query = dict(request.query_params)
        size = min(int(query.get(size_param) or self.default_page_size), self.max_page_size)
        page = max(int(query.get("page") or 1), 1)
        last = max((len(items) + size - 1) // size, 1)
        chunk = list(items[(page - 1) * size : page * size])

        def link(number: int) -> str:
            return str(request.url.replace(query=urlencode({**query, "page": number, size_param: size})))

        links = []
        if page < last:
            links.append(f'<{link(page + 1)}>; rel="next"')
        if page > 1:
            links.append(f'<{link(page - 1)}>; rel="prev"')
        links += [f'<{link(1)}>; rel="first"', f'<{link(last)}>; rel="last"']
        headers = {"link": ", ".join(links), "x-total-count": str(len(items))}
        headers.update(self.page_headers(page, size, last, len(items)))
        return chunk, headers

    # -- what subclasses define ------------------------------------------------------------------------------

    def add_routes(self, app: FastAPI) -> None:
        raise NotImplementedError

    def presented_token(self, headers: Mapping[str, str]) -> str | None:
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        return value if scheme.lower() in ("token", "bearer") else None

    def auth_error(self) -> tuple[int, Any]:
        raise NotImplementedError

    def not_found_error(self) -> tuple[int, Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    def fault_error(self, fault: _Fault) -> tuple[int, Any, dict[str, str]]:
        if fault.status == 401:
            status, body = self.auth_error()
            return status, body, fault.headers
        message = fault.message or _REASONS.get(fault.status, "Error")
        return fault.status, self.error_body(fault.status, message), fault.headers

    def page_headers(self, page: int, size: int, last: int, total: int) -> dict[str, str]:
        return {}


_REASONS = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.json() if await request.body() else {}
    if not isinstance(body, dict):
        raise _Answer(400, {"message": "Problems parsing JSON"})
    return body


# ============================================================================================== GitHub


class GitHubServer(ForgeServer):
    """GitHub's REST API v3 and the one GraphQL mutation the adapter uses.

    `enterprise=True` serves it the way GitHub Enterprise Server does: REST under `/api/v3`, GraphQL at
    `/api/graphql` (github.com: REST at the root, GraphQL at `/graphql`)."""

    kind = ForgeKind.github
    token_setting = "GITHUB_TOKEN"
    _docs = "https://docs.github.com/rest"

    def __init__(self, *, enterprise: bool = False, **kwargs: Any) -> None:
        self.enterprise = enterprise
        self.prefix = "/api/v3" if enterprise else ""
        super().__init__(**kwargs)

    @property
    def api_url(self) -> str:
        return self.web_url + self.prefix

    def rate_limit_next(self, *, times: int = 1, reset_in: float = 30.0, path: str | None = None) -> None:
        """GitHub's primary rate limit: 403 with `x-ratelimit-remaining: 0` until `reset_in` seconds on."""
        self.fail_next(
            403,
            times=times,
            path=path,
            message="API rate limit exceeded for user ID 1.",
            headers={
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(int(time.time() + reset_in)),
                "x-ratelimit-resource": "core",
            },
        )

    def auth_error(self) -> tuple[int, Any]:
        return 401, {"message": "Bad credentials", "documentation_url": self._docs, "status": "401"}

    def not_found_error(self) -> tuple[int, Any]:
        return 404, {"message": "Not Found", "documentation_url": self._docs, "status": "404"}

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message, "documentation_url": self._docs, "status": str(status)}

    def _pull_json(self, repo: FakeRepository, pull: FakePull) -> dict[str, Any]:
        owner = repo.path.split("/", 1)[0]
        repository = {"full_name": repo.path, "name": repo.path.split("/", 1)[1], "owner": {"login": owner}}
        return {
            "id": pull.number + 5000,
            "node_id": pull.node_id,
            "number": pull.number,
            "url": f"{self.api_url}/repos/{repo.path}/pulls/{pull.number}",
            "html_url": f"{self.web_url}/{repo.path}/pull/{pull.number}",
            "state": "closed" if pull.state in ("closed", "merged") else "open",
            "title": pull.title,
            "body": pull.body,
            "draft": pull.draft,
            "merged": pull.state == "merged",
            "merged_at": "2026-01-01T00:00:00Z" if pull.state == "merged" else None,
            "user": {"login": BOT_LOGIN},
            "labels": [{"id": repo.labels[name], "name": name} for name in pull.labels],
            "head": {"ref": pull.head, "label": f"{owner}:{pull.head}", "sha": "0" * 40, "repo": repository},
            "base": {"ref": pull.base, "label": f"{owner}:{pull.base}", "sha": "1" * 40, "repo": repository},
        }

    def _comment_json(self, repo: FakeRepository, comment: FakeComment) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": comment.id,
            "body": comment.body,
            "user": {"login": comment.author},
            "html_url": f"{self.web_url}/{repo.path}/pull/{comment.number}#comment-{comment.id}",
        }
        if comment.review:
            data.update(path=comment.path, line=comment.line, pull_request_review_id=comment.id + 1)
            if comment.thread != str(comment.id):
                data["in_reply_to_id"] = int(comment.thread or 0)
        return data

    def add_routes(self, app: FastAPI) -> None:
        prefix = self.prefix
        rate = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999"}

        def headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
            return {**rate, "x-ratelimit-reset": str(int(time.time() + 3600)), **(extra or {})}

        @app.get(prefix + "/repos/{owner}/{name}/pulls")
        async def list_pulls(owner: str, name: str, request: Request) -> Response:
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                state = request.query_params.get("state", "open")
                head = request.query_params.get("head")
                pulls = [
                    p
                    for p in reversed(repo.pulls.values())  # newest first, like GitHub
                    if (state == "all" or (p.state == "open") == (state == "open"))
                    and (head is None or f"{owner}:{p.head}" == head)
                ]
                page, page_headers = self.paginate(request, pulls, "per_page")
                body = [self._pull_json(repo, p) for p in page]
            return JSONResponse(body, headers=headers(page_headers))

        @app.post(prefix + "/repos/{owner}/{name}/pulls")
        async def create_pull(owner: str, name: str, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                missing = [f for f in ("title", "head", "base") if not data.get(f)]
                if missing:
                    raise _Answer(
                        422,
                        {
                            "message": "Validation Failed",
                            "errors": [
                                {"resource": "PullRequest", "code": "missing_field", "field": f}
                                for f in missing
                            ],
                            "documentation_url": self._docs,
                            "status": "422",
                        },
                    )
                head = str(data["head"]).split(":", 1)[-1]
                if self._open_pull_from(repo, head) is not None:
                    raise _Answer(
                        422,
                        {
                            "message": "Validation Failed",
                            "errors": [
                                {
                                    "resource": "PullRequest",
                                    "code": "custom",
                                    "message": f"A pull request already exists for {owner}:{head}.",
                                }
                            ],
                            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                            "status": "422",
                        },
                    )
                pull = self._new_pull(
                    repo,
                    head,
                    str(data["base"]),
                    str(data["title"]),
                    str(data.get("body") or ""),
                    bool(data.get("draft", False)),
                )
                body = self._pull_json(repo, pull)
            return JSONResponse(body, status_code=201, headers=headers())

        @app.get(prefix + "/repos/{owner}/{name}/pulls/{number}")
        async def get_pull(owner: str, name: str, number: int) -> Response:
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                body = self._pull_json(repo, self._pull(repo, number))
            return JSONResponse(body, headers=headers())

        @app.patch(prefix + "/repos/{owner}/{name}/pulls/{number}")
        async def update_pull(owner: str, name: str, number: int, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                pull = self._pull(repo, number)
                if "title" in data:
                    pull.title = str(data["title"])
                if "body" in data:
                    pull.body = str(data["body"] or "")
                if data.get("state") in ("open", "closed"):
                    pull.state = str(data["state"])
                body = self._pull_json(repo, pull)
            return JSONResponse(body, headers=headers())

        @app.post(prefix + "/repos/{owner}/{name}/issues/{number}/labels")
        async def add_labels(owner: str, name: str, number: int, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                pull = self._pull(repo, number)
                for label in data.get("labels", []):
                    self._label_id(repo, str(label))  # the issues API creates unknown labels
                    if label not in pull.labels:
                        pull.labels.append(str(label))
                body = [{"id": repo.labels[n], "name": n} for n in pull.labels]
            return JSONResponse(body, headers=headers())

        @app.post(prefix + "/repos/{owner}/{name}/issues/{number}/comments")
        async def comment(owner: str, name: str, number: int, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                created = self._add_comment(repo, number, str(data.get("body", "")))
                body = self._comment_json(repo, created)
            return JSONResponse(body, status_code=201, headers=headers())

        @app.get(prefix + "/repos/{owner}/{name}/pulls/{number}/comments")
        async def review_comments(owner: str, name: str, number: int, request: Request) -> Response:
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                self._pull(repo, number)
                items = [
                    self._comment_json(repo, c) for c in repo.comments if c.number == number and c.review
                ]
            page, links = self.paginate(request, items, "per_page")
            return JSONResponse(page, headers={**headers(), **links})

        @app.post(prefix + "/repos/{owner}/{name}/pulls/{number}/comments/{comment_id}/replies")
        async def reply(owner: str, name: str, number: int, comment_id: int, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                root = next((c for c in repo.comments if c.id == comment_id and c.review), None)
                if root is None or root.number != number:
                    raise _Answer(*self.not_found_error())
                created = self._add_comment(
                    repo,
                    number,
                    str(data.get("body", "")),
                    review=True,
                    thread=str(root.id),
                    path=root.path,
                    line=root.line,
                )
                body = self._comment_json(repo, created)
            return JSONResponse(body, status_code=201, headers=headers())

        graphql_path = "/api/graphql" if self.enterprise else "/graphql"

        @app.post(graphql_path)
        async def graphql(request: Request) -> Response:
            data = await _json_body(request)
            query = str(data.get("query", ""))
            node_id = (data.get("variables") or {}).get("id")
            if "markPullRequestReadyForReview" not in query:
                return JSONResponse(
                    {"errors": [{"message": "unsupported by the test server"}]}, status_code=200
                )
            with self._lock:
                found = [
                    (repo, pull)
                    for repo in self._repositories.values()
                    for pull in repo.pulls.values()
                    if pull.node_id == node_id
                ]
                if not found:
                    return JSONResponse(
                        {
                            "data": {"markPullRequestReadyForReview": None},
                            "errors": [
                                {
                                    "type": "NOT_FOUND",
                                    "path": ["markPullRequestReadyForReview"],
                                    "message": f"Could not resolve to a node with the global id of '{node_id}'",  # noqa: E501
                                }
                            ],
                        },
                        headers=headers(),
                    )
                repo, pull = found[0]
                pull.draft = False
                answer = {
                    "number": pull.number,
                    "url": f"{self.web_url}/{repo.path}/pull/{pull.number}",
                    "isDraft": False,
                    "state": "OPEN" if pull.state == "open" else pull.state.upper(),
                }
            return JSONResponse(
                {"data": {"markPullRequestReadyForReview": {"pullRequest": answer}}}, headers=headers()
            )


# ============================================================================================== GitLab


class GitLabServer(ForgeServer):
    """GitLab's REST API v4 under `/api/v4`; projects are named by id or URL-encoded full path."""

    kind = ForgeKind.gitlab
    token_setting = "GITLAB_TOKEN"
    default_page_size = 20

    def presented_token(self, headers: Mapping[str, str]) -> str | None:
        if "private-token" in headers:
            return headers["private-token"]
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return value if scheme.lower() == "bearer" else None

    def auth_error(self) -> tuple[int, Any]:
        return 401, {"message": "401 Unauthorized"}

    def not_found_error(self) -> tuple[int, Any]:
        return 404, {"message": "404 Project Not Found"}

    def error_body(self, status: int, message: str) -> Any:
        return {"message": f"{status} {message}"} if status >= 500 or status == 429 else {"message": message}

    def new_thread_id(self, comment: FakeComment) -> str:
        return hashlib.sha1(f"discussion-{comment.id}".encode()).hexdigest()

    def page_headers(self, page: int, size: int, last: int, total: int) -> dict[str, str]:
        return {
            "x-page": str(page),
            "x-per-page": str(size),
            "x-next-page": str(page + 1) if page < last else "",
            "x-prev-page": str(page - 1) if page > 1 else "",
            "x-total": str(total),
            "x-total-pages": str(last),
        }

    def _project(self, project: str) -> FakeRepository:
        if project.isdigit():
            repos = list(self._repositories.values())
            index = int(project) - 1
            if 0 <= index < len(repos):
                return repos[index]
        return self._repo(project)

    def _mr_json(self, repo: FakeRepository, pull: FakePull) -> dict[str, Any]:
        draft = pull.title.lower().startswith(("draft:", "[draft]", "(draft)"))
        return {
            "id": pull.number + 9000,
            "iid": pull.number,
            "project_id": list(self._repositories).index(repo.path) + 1,
            "title": pull.title,
            "description": pull.body,
            "state": {"open": "opened"}.get(pull.state, pull.state),
            "draft": draft,
            "work_in_progress": draft,
            "source_branch": pull.head,
            "target_branch": pull.base,
            "labels": list(pull.labels),
            "author": {"username": BOT_LOGIN},
            "web_url": f"{self.web_url}/{repo.path}/-/merge_requests/{pull.number}",
        }

    def _note_json(self, comment: FakeComment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "body": comment.body,
            "author": {"username": comment.author},
            "noteable_type": "MergeRequest",
            "noteable_iid": comment.number,
            "type": "DiffNote" if comment.review else None,
            "system": False,
        }

    def _snapshot(self, pull: FakePull) -> FakePull:
        draft = pull.title.lower().startswith(("draft:", "[draft]", "(draft)"))
        return replace(pull, labels=list(pull.labels), draft=draft)

    def add_routes(self, app: FastAPI) -> None:
        base = "/api/v4/projects/{project:path}/merge_requests"

        def split_labels(value: Any) -> list[str]:
            items = value if isinstance(value, list) else str(value or "").split(",")
            return [str(item).strip() for item in items if str(item).strip()]

        @app.get(base)
        async def list_mrs(project: str, request: Request) -> Response:
            with self._lock:
                repo = self._project(project)
                state = request.query_params.get("state", "all")
                source = request.query_params.get("source_branch")
                gitlab_state = {"open": "opened"}
                mrs = [
                    p
                    for p in reversed(repo.pulls.values())
                    if (state == "all" or gitlab_state.get(p.state, p.state) == state)
                    and (source is None or p.head == source)
                ]
                page, page_headers = self.paginate(request, mrs, "per_page")
                body = [self._mr_json(repo, p) for p in page]
            return JSONResponse(body, headers=page_headers)

        @app.post(base)
        async def create_mr(project: str, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._project(project)
                missing = [f for f in ("source_branch", "target_branch", "title") if not data.get(f)]
                if missing:
                    raise _Answer(400, {"error": f"{', '.join(missing)} is missing"})
                existing = self._open_pull_from(repo, str(data["source_branch"]))
                if existing is not None:
                    message = (
                        "Another open merge request already exists for this source branch: "
                        f"!{existing.number}"
                    )
                    raise _Answer(409, {"message": [message]})
                pull = self._new_pull(
                    repo,
                    str(data["source_branch"]),
                    str(data["target_branch"]),
                    str(data["title"]),
                    str(data.get("description") or ""),
                    False,
                )
                for label in split_labels(data.get("labels")):
                    self._label_id(repo, label)  # GitLab creates unknown labels on the project
                    pull.labels.append(label)
                body = self._mr_json(repo, pull)
            return JSONResponse(body, status_code=201)

        @app.get(base + "/{iid}")
        async def get_mr(project: str, iid: int) -> Response:
            with self._lock:
                repo = self._project(project)
                body = self._mr_json(repo, self._mr(repo, iid))
            return JSONResponse(body)

        @app.put(base + "/{iid}")
        async def update_mr(project: str, iid: int, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._project(project)
                pull = self._mr(repo, iid)
                if "title" in data:
                    pull.title = str(data["title"])
                if "description" in data:
                    pull.body = str(data["description"] or "")
                if "labels" in data:
                    pull.labels = split_labels(data["labels"])
                for label in split_labels(data.get("add_labels")):
                    self._label_id(repo, label)
                    if label not in pull.labels:
                        pull.labels.append(label)
                if data.get("state_event") == "close":
                    pull.state = "closed"
                elif data.get("state_event") == "reopen":
                    pull.state = "open"
                body = self._mr_json(repo, pull)
            return JSONResponse(body)

        @app.post(base + "/{iid}/notes")
        async def create_note(project: str, iid: int, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._project(project)
                self._mr(repo, iid)
                note = self._add_comment(repo, iid, str(data.get("body", "")))
                body = self._note_json(note)
            return JSONResponse(body, status_code=201)

        @app.get(base + "/{iid}/discussions/{discussion_id}")
        async def discussion(project: str, iid: int, discussion_id: str) -> Response:
            with self._lock:
                repo = self._project(project)
                self._mr(repo, iid)
                notes = [
                    self._note_json(c) for c in repo.comments if c.thread == discussion_id and c.number == iid
                ]
            if not notes:
                raise _Answer(404, {"message": "404 Not found"})
            return JSONResponse({"id": discussion_id, "individual_note": False, "notes": notes})

        @app.post(base + "/{iid}/discussions/{discussion_id}/notes")
        async def reply(project: str, iid: int, discussion_id: str, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._project(project)
                self._mr(repo, iid)
                root = next((c for c in repo.comments if c.thread == discussion_id and c.number == iid), None)
                if root is None:
                    raise _Answer(404, {"message": "404 Not found"})
                note = self._add_comment(
                    repo,
                    iid,
                    str(data.get("body", "")),
                    review=root.review,
                    thread=discussion_id,
                    path=root.path,
                    line=root.line,
                )
                body = self._note_json(note)
            return JSONResponse(body, status_code=201)

    def _mr(self, repo: FakeRepository, iid: int) -> FakePull:
        pull = repo.pulls.get(iid)
        if pull is None:
            raise _Answer(404, {"message": "404 Not found"})
        return pull


# =============================================================================================== Gitea


class GiteaServer(ForgeServer):
    """Gitea's (and Forgejo's) REST API v1 under `/api/v1`."""

    kind = ForgeKind.gitea
    token_setting = "GITEA_TOKEN"
    _docs = "https://gitea.com/api/swagger"

    def auth_error(self) -> tuple[int, Any]:
        return 401, {"message": "user does not exist [uid: 0, name: ]", "url": self._docs}

    def not_found_error(self) -> tuple[int, Any]:
        return 404, {"errors": None, "message": "The target couldn't be found.", "url": self._docs}

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message, "url": self._docs}

    def _snapshot(self, pull: FakePull) -> FakePull:
        draft = pull.title.lower().startswith(("wip:", "[wip]"))
        return replace(pull, labels=list(pull.labels), draft=draft)

    def _pull_json(self, repo: FakeRepository, pull: FakePull) -> dict[str, Any]:
        owner, name = repo.path.split("/", 1)
        repository = {"id": 1, "full_name": repo.path, "name": name, "owner": {"login": owner}}
        return {
            "id": pull.number + 7000,
            "number": pull.number,
            "url": f"{self.web_url}/{repo.path}/pulls/{pull.number}",
            "html_url": f"{self.web_url}/{repo.path}/pulls/{pull.number}",
            "title": pull.title,
            "body": pull.body,
            "state": "closed" if pull.state in ("closed", "merged") else "open",
            "merged": pull.state == "merged",
            "user": {"login": BOT_LOGIN},
            "labels": [{"id": repo.labels[n], "name": n, "color": "ededed"} for n in pull.labels],
            "head": {"ref": pull.head, "label": pull.head, "sha": "0" * 40, "repo_id": 1, "repo": repository},
            "base": {"ref": pull.base, "label": pull.base, "sha": "1" * 40, "repo_id": 1, "repo": repository},
        }

    def _comment_json(self, repo: FakeRepository, comment: FakeComment) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": comment.id,
            "body": comment.body,
            "user": {"login": comment.author},
            "html_url": f"{self.web_url}/{repo.path}/pulls/{comment.number}#issuecomment-{comment.id}",
        }
        if comment.review:
            data.update(
                path=comment.path,
                position=comment.line,
                pull_request_review_id=comment.review_id,
                diff_hunk="@@ -1,1 +1,1 @@",
            )
        return data

    def add_routes(self, app: FastAPI) -> None:
        base = "/api/v1/repos/{owner}/{name}"

        @app.get(base + "/pulls")
        async def list_pulls(owner: str, name: str, request: Request) -> Response:
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                state = request.query_params.get("state", "open")
                pulls = [
                    p
                    for p in reversed(repo.pulls.values())
                    if state == "all" or (p.state == "open") == (state == "open")
                ]
                page, page_headers = self.paginate(request, pulls, "limit")
                body = [self._pull_json(repo, p) for p in page]
            return JSONResponse(body, headers=page_headers)

        @app.post(base + "/pulls")
        async def create_pull(owner: str, name: str, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                if not data.get("head") or not data.get("base") or not data.get("title"):
                    raise _Answer(
                        422,
                        {
                            "message": "[Head]: Required; [Base]: Required; [Title]: Required",
                            "url": self._docs,
                        },
                    )
                existing = self._open_pull_from(repo, str(data["head"]))
                if existing is not None:
                    message = (
                        f"pull request already exists for these targets [id: {existing.number + 7000}, "
                        f"issue_id: {existing.number}, head_repo_id: 1, base_repo_id: 1, "
                        f"head_branch: {existing.head}, base_branch: {existing.base}]"
                    )
                    raise _Answer(409, {"message": message, "url": self._docs})
                names = self._label_names(repo, data.get("labels") or [])
                pull = self._new_pull(
                    repo,
                    str(data["head"]),
                    str(data["base"]),
                    str(data["title"]),
                    str(data.get("body") or ""),
                    False,
                )
                pull.labels.extend(names)
                body = self._pull_json(repo, pull)
            return JSONResponse(body, status_code=201)

        @app.get(base + "/pulls/{number}")
        async def get_pull(owner: str, name: str, number: int) -> Response:
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                body = self._pull_json(repo, self._pull(repo, number))
            return JSONResponse(body)

        @app.patch(base + "/pulls/{number}")
        async def update_pull(owner: str, name: str, number: int, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                pull = self._pull(repo, number)
                if "title" in data:
                    pull.title = str(data["title"])
                if "body" in data:
                    pull.body = str(data["body"] or "")
                if data.get("state") in ("open", "closed"):
                    pull.state = str(data["state"])
                body = self._pull_json(repo, pull)
            return JSONResponse(body, status_code=201)

        @app.get(base + "/labels")
        async def list_labels(owner: str, name: str, request: Request) -> Response:
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                labels = [{"id": i, "name": n, "color": "ededed"} for n, i in repo.labels.items()]
                page, page_headers = self.paginate(request, labels, "limit")
            return JSONResponse(page, headers=page_headers)

        @app.post(base + "/labels")
        async def create_label(owner: str, name: str, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                label, color = str(data.get("name") or ""), str(data.get("color") or "")
                if not label or not re.fullmatch(r"#?[0-9a-fA-F]{6}", color):
                    raise _Answer(422, {"message": "[Color]: invalid color", "url": self._docs})
                if label in repo.labels:
                    raise _Answer(409, {"message": "label already exists", "url": self._docs})
                body = {"id": self._label_id(repo, label), "name": label, "color": color.lstrip("#")}
            return JSONResponse(body, status_code=201)

        @app.post(base + "/issues/{number}/labels")
        async def add_labels(owner: str, name: str, number: int, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                pull = self._pull(repo, number)
                for label in self._label_names(repo, data.get("labels") or []):
                    if label not in pull.labels:
                        pull.labels.append(label)
                body = [{"id": repo.labels[n], "name": n, "color": "ededed"} for n in pull.labels]
            return JSONResponse(body)

        @app.post(base + "/issues/{number}/comments")
        async def comment(owner: str, name: str, number: int, request: Request) -> Response:
            data = await _json_body(request)
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                created = self._add_comment(repo, number, str(data.get("body", "")))
                body = self._comment_json(repo, created)
            return JSONResponse(body, status_code=201)

        @app.get(base + "/pulls/{number}/reviews")
        async def list_reviews(owner: str, name: str, number: int, request: Request) -> Response:
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                self._pull(repo, number)
                reviews = [
                    {
                        "id": review_id,
                        "state": "COMMENT",
                        "body": "",
                        "user": {"login": "reviewer"},
                        "comments_count": sum(c.review_id == review_id for c in repo.comments),
                    }
                    for review_id, pull_number in repo.reviews.items()
                    if pull_number == number
                ]
                page, page_headers = self.paginate(request, reviews, "limit")
            return JSONResponse(page, headers=page_headers)

        @app.get(base + "/pulls/{number}/reviews/{review_id}/comments")
        async def list_review_comments(owner: str, name: str, number: int, review_id: int) -> Response:
            with self._lock:
                repo = self._repo(f"{owner}/{name}")
                if repo.reviews.get(review_id) != number:
                    raise _Answer(*self.not_found_error())
                body = [self._comment_json(repo, c) for c in repo.comments if c.review_id == review_id]
            return JSONResponse(body)

    def _label_names(self, repo: FakeRepository, ids: Sequence[Any]) -> list[str]:
        by_id = {i: n for n, i in repo.labels.items()}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise _Answer(422, {"message": f"label does not exist [id: {unknown[0]}]", "url": self._docs})
        return [by_id[i] for i in ids]


SERVERS: dict[ForgeKind, Callable[..., ForgeServer]] = {
    ForgeKind.github: GitHubServer,
    ForgeKind.gitlab: GitLabServer,
    ForgeKind.gitea: GiteaServer,
}


def all_kinds() -> Iterator[ForgeKind]:
    return iter(SERVERS)
