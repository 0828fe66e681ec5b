"""API keys and roles: who may call the HTTP API, and as what.

Stable API, for any router that needs a caller's identity:

    auth = Authenticator(database)                 # one per app, over the app's Database

    @router.post("/api/v1/kill-switch")
    async def engage(principal: Principal = Depends(auth.require(Role.admin))) -> ...:
        ...                                         # principal.key_id, .name, .role

(or `APIRouter(dependencies=[Depends(auth.require(Role.admin))])` for a whole router). Give the dependency
as a default value, as here: an `Annotated[...]` alias defined inside a function is invisible to FastAPI
in a module with `from __future__ import annotations`. Module-level routers that find the database at
request time (the gateway's) use `bearer`, `authenticate` and `check_role` directly.

`auth.require(*roles)` is a FastAPI dependency: 401 with `WWW-Authenticate: Bearer` without a valid
`Authorization: Bearer <key>`, 403 when the key's role is none of `roles`. Read-only requests (GET, HEAD)
may carry the key in the web dashboard's session cookie instead (`SESSION_COOKIE`): a browser's
EventSource and fetch cannot set the header. A request that changes something needs the header, so a
cookie alone, which the browser attaches by itself, never authorises a write (the dashboard's own forms
check a CSRF token besides, see `gateway.dashboard`). `Role.admin` satisfies every
role, so `require(Role.reader)` admits readers and admins. `require()` with no role admits any valid key.
The principal is cached on the request, so stacking dependencies costs one database read.

Keys are `sf_` + 43 url-safe random characters (256 bits). Only their SHA-256 is stored: a slow hash adds
nothing for a key of that entropy, and a lookup by digest plus a constant-time comparison keeps the check
cheap and free of timing leaks. The first characters (`prefix`) are kept in clear to tell keys apart in
`service-feature apikey list`; the whole key is shown once, when it is created.

A key found valid is remembered by its digest for `KEY_CACHE_SECONDS` (per database), so a busy client
costs no database read per request. A revocation made through this process's ORM takes effect at once; one
made elsewhere (`service-feature apikey revoke`, another replica) within `KEY_CACHE_SECONDS`, the bound for
both (a request reading the key while the revocation commits may remember it that long). Unknown and
revoked keys are never remembered: a key issued a moment ago works at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from service_feature.store.apikeys import active_key_by_hash, add_key, key_by_hash, list_keys
from service_feature.store.database import Database
from service_feature.store.tables import ApiKey

log = structlog.get_logger(__name__)

KEY_PREFIX = "sf_"
_PREFIX_LENGTH = 10


class Role(StrEnum):
    submitter = "submitter"  # submit features, read its own
    reader = "reader"  # read every feature
    admin = "admin"  # everything: kill switch, approvals, key management


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: Role

    def has(self, *roles: Role) -> bool:
        return self.role is Role.admin or not roles or self.role in roles

    @property
    def sees_all_features(self) -> bool:
        return self.role in (Role.reader, Role.admin)


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only moment its secret is known."""

    id: str
    name: str
    role: Role
    secret: str


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def issue_key(database: Database, *, name: str, role: Role, secret: str | None = None) -> IssuedKey:
    """Store a new key (generated unless `secret` is given, e.g. SF_ADMIN_KEY) and return it once."""
    secret = secret or generate_key()
    async with database.transaction() as session:
        row = await add_key(
            session, name=name, role=role.value, prefix=secret[:_PREFIX_LENGTH], key_hash=hash_key(secret)
        )
    return IssuedKey(id=row.id, name=name, role=role, secret=secret)


_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}

# The web dashboard's session: `<nonce>.<key>`, HttpOnly and SameSite=Strict (gateway.dashboard.session).
SESSION_COOKIE = "sf_session"
SAFE_METHODS = frozenset({"GET", "HEAD"})


def session_secret(request: Request) -> tuple[str, str] | None:
    """The dashboard session cookie's nonce and API key, if the request carries a well-formed one."""
    nonce, dot, key = request.cookies.get(SESSION_COOKIE, "").partition(".")
    return (nonce, key) if nonce and dot and key else None


def cookie_credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    """The session cookie's key as credentials, for a read-only request only: a cross-site form or
    script can make the browser send the cookie, so it must never be enough to change anything."""
    if request.method not in SAFE_METHODS or (secret := session_secret(request)) is None:
        return None
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=secret[1])


# One scheme for every router: the OpenAPI schema names it (HTTPBearer) and documents it once.
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer sf_…`")


async def authenticate(
    request: Request, database: Database, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The caller's Principal, read once per request (cached on it); 401 without a valid key. The header
    wins over the dashboard's session cookie, which counts on read-only requests only."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    credentials = credentials or cookie_credentials(request)
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an API key is required", _UNAUTHORIZED)
    digest = hash_key(credentials.credentials)
    cache = key_cache(database)
    principal = cache.get(digest)
    if principal is None:
        principal = await principal_of_key(database, digest)
        cache.put(digest, principal)
    request.state.principal = principal
    return principal


async def principal_of_key(database: Database, digest: str) -> Principal:
    """Who the key with this digest is, read from the database; 401 for an unknown or revoked key."""
    async with database.transaction() as session:
        row = await active_key_by_hash(session, digest)
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", _UNAUTHORIZED)
    return Principal(key_id=row.id, name=row.name, role=Role(row.role))


# -- remembered keys ---------------------------------------------------------------------------------------

KEY_CACHE_SECONDS = 5.0
_KEYS_REMEMBERED = 4096  # a bound on memory; only valid keys are kept, so only key holders fill it


class KeyCache:
    """Principals of keys recently found valid, by key digest, each for `seconds`."""

    def __init__(self, seconds: float = KEY_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires, principal = entry
        if expires <= self.clock():
            del self._entries[digest]
            return None
        return principal

    def put(self, digest: str, principal: Principal) -> None:
        self._entries.pop(digest, None)  # re-inserted last: the dict's order is the order of expiry
        self._entries[digest] = (self.clock() + self.seconds, principal)
        while len(self._entries) > _KEYS_REMEMBERED:
            del self._entries[next(iter(self._entries))]

    def forget(self, digest: str) -> None:
        self._entries.pop(digest, None)


# One cache per Database: a process may serve several databases (tests run several platforms).
_key_caches: weakref.WeakKeyDictionary[Database, KeyCache] = weakref.WeakKeyDictionary()


def key_cache(database: Database) -> KeyCache:
    cache = _key_caches.get(database)
    if cache is None:
        cache = _key_caches[database] = KeyCache()
    return cache


@event.listens_for(ApiKey, "after_update")
@event.listens_for(ApiKey, "after_delete")
def _forget_changed_key(_mapper: Any, _connection: Any, key: ApiKey) -> None:
    """A key revoked or deleted through this process's ORM is forgotten at once, whichever database."""
    for cache in list(_key_caches.values()):
        cache.forget(key.key_hash)


def check_role(principal: Principal, *roles: Role) -> Principal:
    """The principal when its role is one of `roles` (admin always is); 403 otherwise."""
    if not principal.has(*roles):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this needs the role {' or '.join(roles)}; the key has {principal.role}",
        )
    return principal


class Authenticator:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def authenticate(
        self, request: Request, credentials: HTTPAuthorizationCredentials | None
    ) -> Principal:
        return await authenticate(request, self.database, credentials)

    def require(self, *roles: Role) -> Callable[..., Awaitable[Principal]]:
        """A dependency returning the caller's Principal; 401 without a valid key, 403 for another role."""
        scheme = Depends(bearer)

        async def dependency(
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = scheme,
        ) -> Principal:
            return check_role(await self.authenticate(request, credentials), *roles)

        return dependency


# -- the embedded platform's first admin key ----------------------------------------------------------


async def bootstrap_admin_key(
    database: Database, key_file: Path, *, generate: bool, wanted: str | None = None
) -> None:
    """Make sure an operator can reach the API: register `wanted` (SF_ADMIN_KEY) when set, or (with
    `generate`, the embedded `up`) create an admin key on first start and print it once. The key in use is
    written to `key_file` (mode 0600) for local clients (`submit`, `status`, `demo`)."""
    if wanted:
        known = await _registered(database, wanted)
        if known is not None and known.revoked_at is not None:
            log.warning("auth.admin_key_revoked", key_id=known.id)
            return
        _write_key_file(key_file, wanted)
        return
    if not generate or await _has_admin(database):
        return
    issued = await issue_key(database, name="admin (generated)", role=Role.admin)
    _write_key_file(key_file, issued.secret)
    # Printed, not logged: shown once on the operator's terminal, never in structured logs.
    print(
        f"\nService Feature admin API key (shown once, also in {key_file}):\n  {issued.secret}\n",
        file=sys.stderr,
        flush=True,
    )


async def _registered(database: Database, wanted: str) -> ApiKey | None:
    """The key record of `wanted`, registered now if it is new. Gateways starting together for the first
    time register it at once: the one that loses the race on the unique hash reads the winner's record."""
    async with database.transaction() as session:
        known = await key_by_hash(session, hash_key(wanted))
    if known is not None:
        return known
    with contextlib.suppress(IntegrityError):
        await issue_key(database, name="admin (SF_ADMIN_KEY)", role=Role.admin, secret=wanted)
    async with database.transaction() as session:
        return await key_by_hash(session, hash_key(wanted))


async def _has_admin(database: Database) -> bool:
    async with database.transaction() as session:
        keys = await list_keys(session)
    return any(k.role == Role.admin.value and k.revoked_at is None for k in keys)


def _write_key_file(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT
