"""The dashboard's sign-in session and its CSRF protection.

The session cookie (`auth.SESSION_COOKIE`) holds `<nonce>.<api key>`: HttpOnly (no script reads it),
SameSite=Strict (no other site's page makes the browser send it), Secure when served over https, and no
expiry (it ends with the browser, or at sign-out). The raw key is kept rather than a signed session
because the gateway has no signing secret shared by its replicas, and a key in a cookie the page cannot
read is no more exposed than in any API client's configuration; revoking the key ends every session of
it at once. The API accepts the cookie on read-only requests only (`auth.cookie_credentials`).

Every dashboard form carries a CSRF token: the HMAC of the session's nonce under the key. Only someone
holding the cookie's contents can compute it, and a new sign-in (a new nonce) changes it. The sign-in form,
before any session exists, uses a double-submit token: a random value in a cookie of its own and in the
form, which another site can neither read nor set.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials

from service_feature.auth import SESSION_COOKIE, Principal, authenticate, session_secret
from service_feature.store.database import Database

SIGN_IN_COOKIE = "sf_sign_in"
CSRF_FIELD = "csrf_token"


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https (uvicorn applies a trusted proxy's X-Forwarded-Proto)."""
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=is_https(request), path="/")


def start_session(response: Response, request: Request, key: str) -> None:
    set_cookie(response, request, SESSION_COOKIE, f"{secrets.token_urlsafe(16)}.{key}")
    response.delete_cookie(SIGN_IN_COOKIE, path="/")


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def csrf_token(request: Request) -> str:
    """The current session's CSRF token; empty without a session."""
    secret = session_secret(request)
    if secret is None:
        return ""
    nonce, key = secret
    return hmac.new(key.encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()


def sign_in_token(request: Request) -> str:
    """The sign-in form's double-submit token: the one already in its cookie, else a new one."""
    return request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)


def check_sign_in_token(request: Request, submitted: str) -> None:
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form expired: reload the page and try again")


def check_csrf(request: Request, submitted: str) -> None:
    """403 unless the form's token is this session's."""
    expected = csrf_token(request)
    if not expected or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the form's CSRF token is missing or wrong")


async def session_principal(request: Request, database: Database) -> Principal | None:
    """Who the session cookie signs in, whatever the method; None without a session or a valid key."""
    secret = session_secret(request)
    if secret is None:
        return None
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=secret[1])
    try:
        return await authenticate(request, database, credentials)
    except HTTPException:
        return None


async def key_principal(request: Request, database: Database, key: str) -> Principal | None:
    """Who `key` is, for the sign-in form; None for an unknown or revoked key."""
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
    try:
        return await authenticate(request, database, credentials)
    except HTTPException:
        return None
