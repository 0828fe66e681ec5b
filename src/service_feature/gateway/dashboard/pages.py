"""The dashboard's pages and forms. Every page is rendered on the server (Jinja2, autoescaped); a small
script (static/dashboard.js) keeps the `data-live` regions current by fetching the page again, at once
when the event stream says something happened, on a timer otherwise.

Reads reuse the feature API's scoping (`routes.find_visible`: a submitter key sees its own features);
approve, reject and cancel call the API's own route functions after the same role checks their
dependencies make, so the rules and the records are the API's.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the parameter annotations.
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import ChainableUndefined, Environment, FileSystemLoader
from pydantic import ValidationError

from service_feature.auth import Principal, Role, check_role
from service_feature.gateway import killswitch_routes
from service_feature.gateway import routes as api
from service_feature.gateway.dashboard import queries, render
from service_feature.gateway.dashboard.session import (
    CSRF_FIELD,
    SIGN_IN_COOKIE,
    check_csrf,
    check_sign_in_token,
    csrf_token,
    end_session,
    key_principal,
    session_principal,
    set_cookie,
    sign_in_token,
    start_session,
)
from service_feature.gateway.deps import Gateway, GatewayDep
from service_feature.gateway.schemas import HumanDecision, Rejection
from service_feature.lifecycle import FeatureStatus
from service_feature.models import ExecutionId
from service_feature.store.features import events_of, latest_patch, latest_review, transcript_of
from service_feature.store.tables import Feature

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# No inline script or style anywhere: everything the page runs or styles with comes from /dashboard/static.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
MAX_FORM_BYTES = 64_000

pages_router = APIRouter(include_in_schema=False)


def timestamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=ChainableUndefined,  # stored dicts vary by version: a missing key shows nothing
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["timestamp"] = timestamp
templates.filters["pretty"] = render.pretty


# -- responses -------------------------------------------------------------------------------------------


def secured(response: Response, *, private: bool = True) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if private:
        response.headers["Cache-Control"] = "no-store"
    return response


def redirect(url: str) -> Response:
    return secured(RedirectResponse(url, status.HTTP_303_SEE_OTHER))


def sign_in_redirect() -> Response:
    return redirect("/sign-in")


def banner_of(gateway: Gateway, principal: Principal | None) -> dict[str, Any] | None:
    """The kill switch as the banner shows it; who engaged it and why only for keys that may read it."""
    switch = gateway.switch
    if switch is None or not switch.engaged:
        return None
    state = switch.state
    detailed = principal is not None and principal.has(Role.reader)
    return {
        "reason": state.reason if detailed else "",
        "actor": state.actor if detailed else "",
        "changed_at": state.changed_at if detailed else None,
    }


def page(
    request: Request,
    gateway: Gateway,
    principal: Principal | None,
    template: str,
    status_code: int = status.HTTP_200_OK,
    **context: Any,
) -> Response:
    token = csrf_token(request)
    html = templates.get_template(template).render(
        principal=principal,
        banner=banner_of(gateway, principal),
        csrf_field=CSRF_FIELD,
        csrf=token,
        stream=context.pop("stream", ""),
        **context,
    )
    return secured(HTMLResponse(html, status_code))


def error_page(
    request: Request, gateway: Gateway, principal: Principal | None, error: HTTPException, back: str
) -> Response:
    return page(
        request, gateway, principal, "error.html", error.status_code, message=str(error.detail), back=back
    )


async def form_of(request: Request) -> dict[str, str]:
    """The posted form (application/x-www-form-urlencoded, what every dashboard form sends)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "a form was expected")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the form is too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20))


Action = Callable[[Principal, dict[str, str]], Awaitable[str]]


async def submit_form(request: Request, gateway: Gateway, back: str, action: Action) -> Response:
    """Run a signed-in form's action after the CSRF check; redirect where the action says, or show why
    it was refused."""
    principal = await session_principal(request, gateway.database)
    if principal is None:
        return sign_in_redirect()
    try:
        form = await form_of(request)
        check_csrf(request, form.get(CSRF_FIELD, ""))
        target = await action(principal, form)
    except HTTPException as error:
        return error_page(request, gateway, principal, error, back)
    return redirect(target)


# -- static files ----------------------------------------------------------------------------------------


@pages_router.get("/dashboard/static/pygments.css")
async def pygments_stylesheet() -> Response:
    """The diff's syntax colours, from the Pygments style the highlighter uses."""
    return secured(Response(render.pygments_css(), media_type=STATIC_TYPES[".css"]), private=False)


@pages_router.get("/dashboard/static/{name}")
async def static_file(name: str) -> Response:
    path = STATIC / name
    # Only the files shipped beside this module: no subdirectory, nothing outside it.
    if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return secured(Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix]), private=False)


# -- sign-in ---------------------------------------------------------------------------------------------


def sign_in_page(request: Request, gateway: Gateway, error: str = "", code: int = 200) -> Response:
    token = sign_in_token(request)
    response = page(request, gateway, None, "sign_in.html", code, sign_in_token=token, error=error)
    set_cookie(response, request, SIGN_IN_COOKIE, token)
    return response


@pages_router.get("/sign-in")
async def sign_in_form(request: Request, gateway: GatewayDep) -> Response:
    if await session_principal(request, gateway.database) is not None:
        return redirect("/")
    return sign_in_page(request, gateway)


@pages_router.post("/sign-in")
async def sign_in(request: Request, gateway: GatewayDep) -> Response:
    try:
        form = await form_of(request)
        check_sign_in_token(request, form.get("sign_in_token", ""))
    except HTTPException as error:
        return sign_in_page(request, gateway, str(error.detail), error.status_code)
    key = form.get("api_key", "").strip()
    if not key or await key_principal(request, gateway.database, key) is None:
        return sign_in_page(request, gateway, "That API key is unknown or revoked.", 401)
    response = redirect("/")
    start_session(response, request, key)
    return response


@pages_router.post("/sign-out")
async def sign_out(request: Request, gateway: GatewayDep) -> Response:
    async def leave(principal: Principal, form: dict[str, str]) -> str:
        return "/sign-in"

    response = await submit_form(request, gateway, "/", leave)
    if response.status_code == status.HTTP_303_SEE_OTHER:
        end_session(response)
    return response


# -- the features list -----------------------------------------------------------------------------------


def status_filter(value: str) -> FeatureStatus | None:
    return FeatureStatus(value) if value in FeatureStatus.__members__ else None


@pages_router.get("/")
async def features_page(
    request: Request,
    gateway: GatewayDep,
    q: Annotated[str, Query(max_length=200)] = "",
    status_name: Annotated[str, Query(alias="status", max_length=32)] = "",
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    principal = await session_principal(request, gateway.database)
    if principal is None:
        return sign_in_redirect()
    wanted = status_filter(status_name)
    async with gateway.database.transaction() as session:
        rows, total = await queries.search_features(
            session, principal, status=wanted, text=q.strip(), offset=offset
        )
        counts = await queries.active_counts(session, principal)

    def page_link(at: int) -> str:
        return "/?" + urlencode({"q": q, "status": status_name, "offset": at})

    size = queries.PAGE_SIZE
    return page(
        request,
        gateway,
        principal,
        "features.html",
        features=rows,
        total=total,
        q=q,
        status=wanted.value if wanted else "",
        statuses=[s.value for s in FeatureStatus],
        counts=counts,
        newer=page_link(max(offset - size, 0)) if offset > 0 else None,
        older=page_link(offset + size) if offset + size < total else None,
        stream="/api/v1/events/stream",
    )


# -- one feature -----------------------------------------------------------------------------------------


def may_cancel(principal: Principal, feature: Feature) -> bool:
    """The cancel route's rule: a submitter key its own features, an admin key any; not once ended."""
    allowed = principal.role is Role.admin or (
        principal.role is Role.submitter and feature.submitted_by == principal.key_id
    )
    return allowed and render.can_cancel(feature.status)


async def feature_view(gateway: Gateway, execution_id: str, principal: Principal) -> dict[str, Any]:
    """Everything the feature page shows, read in one transaction."""
    async with gateway.database.transaction() as session:
        feature = await api.find_visible(session, execution_id, principal)
        events = list(await events_of(session, execution_id))
        patch = await latest_patch(session, execution_id)
        execution = await queries.latest_execution(session, execution_id)
        review = await latest_review(session, execution_id)
        entries = [(e.attempt, e.kind, e.content) for e in await transcript_of(session, execution_id)]
    diff = patch.diff if patch is not None else ""
    too_large = len(diff) > render.MAX_DIFF_CHARS
    return {
        "feature": feature,
        "events": events,
        "timeline": [e for e in events if render.is_status_event(e.type)],
        "patch": patch,
        "diff_files": [] if too_large else render.diff_files(diff),
        "diff_too_large": too_large,
        "tests": render.run_table(execution.result) if execution is not None else None,
        "test_attempt": execution.attempt if execution is not None else None,
        "review": review,
        "transcript": render.transcript_items(entries),
        "pull_request_url": render.safe_link(getattr(feature, "pull_request_url", None)),
        "held": feature.status == FeatureStatus.awaiting_approval,
        "may_decide": principal.role is Role.admin and feature.status == FeatureStatus.awaiting_approval,
        "may_cancel": may_cancel(principal, feature),
    }


@pages_router.get("/features/{execution_id}")
async def feature_page(execution_id: ExecutionId, request: Request, gateway: GatewayDep) -> Response:
    principal = await session_principal(request, gateway.database)
    if principal is None:
        return sign_in_redirect()
    try:
        view = await feature_view(gateway, execution_id, principal)
    except HTTPException as error:
        return error_page(request, gateway, principal, error, "/")
    stream = f"/api/v1/features/{execution_id}/stream"
    return page(request, gateway, principal, "feature.html", stream=stream, **view)


def feature_url(execution_id: str) -> str:
    return f"/features/{execution_id}"


@pages_router.post("/features/{execution_id}/approve")
async def approve(execution_id: ExecutionId, request: Request, gateway: GatewayDep) -> Response:
    async def decide(principal: Principal, form: dict[str, str]) -> str:
        check_role(principal, Role.admin)
        decision = HumanDecision(reason=form.get("reason", "")[:2000])
        await api.approve(execution_id, decision, principal, gateway)
        return feature_url(execution_id)

    return await submit_form(request, gateway, feature_url(execution_id), decide)


@pages_router.post("/features/{execution_id}/reject")
async def reject(execution_id: ExecutionId, request: Request, gateway: GatewayDep) -> Response:
    async def decide(principal: Principal, form: dict[str, str]) -> str:
        check_role(principal, Role.admin)
        try:
            rejection = Rejection(reason=form.get("reason", "").strip())
        except ValidationError:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "a rejection needs a reason (up to 2000 characters)"
            ) from None
        await api.reject(execution_id, rejection, principal, gateway)
        return feature_url(execution_id)

    return await submit_form(request, gateway, feature_url(execution_id), decide)


@pages_router.post("/features/{execution_id}/cancel")
async def cancel(execution_id: ExecutionId, request: Request, gateway: GatewayDep) -> Response:
    async def stop(principal: Principal, form: dict[str, str]) -> str:
        check_role(principal, Role.submitter)
        await api.cancel(execution_id, principal, gateway)
        return feature_url(execution_id)

    return await submit_form(request, gateway, feature_url(execution_id), stop)


# -- the kill switch -------------------------------------------------------------------------------------


def check_switch(gateway: Gateway) -> None:
    if gateway.switch is None or gateway.bus is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this gateway runs without a kill switch")


@pages_router.get("/kill-switch")
async def kill_switch_page(request: Request, gateway: GatewayDep) -> Response:
    principal = await session_principal(request, gateway.database)
    if principal is None:
        return sign_in_redirect()
    try:
        check_role(principal, Role.reader)
        check_switch(gateway)
    except HTTPException as error:
        return error_page(request, gateway, principal, error, "/")
    assert gateway.switch is not None
    audit = await killswitch_routes.audit(gateway)
    return page(
        request,
        gateway,
        principal,
        "kill_switch.html",
        engaged=gateway.switch.engaged,
        state=gateway.switch.state,
        audit=audit,
        may_change=principal.role is Role.admin,
    )


async def flip_switch(request: Request, gateway: Gateway, *, engaged: bool) -> Response:
    async def flip(principal: Principal, form: dict[str, str]) -> str:
        check_role(principal, Role.admin)
        check_switch(gateway)
        try:
            change = killswitch_routes.SwitchChange(reason=form.get("reason", "").strip())
        except ValidationError:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "a reason is required (up to 2000 characters)"
            ) from None
        await killswitch_routes.flip(gateway, engaged=engaged, change=change, principal=principal)
        return "/kill-switch"

    return await submit_form(request, gateway, "/kill-switch", flip)


@pages_router.post("/kill-switch/engage")
async def engage(request: Request, gateway: GatewayDep) -> Response:
    return await flip_switch(request, gateway, engaged=True)


@pages_router.post("/kill-switch/release")
async def release(request: Request, gateway: GatewayDep) -> Response:
    return await flip_switch(request, gateway, engaged=False)
