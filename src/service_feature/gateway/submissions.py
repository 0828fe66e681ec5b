"""What every way of submitting a feature checks and does: the API's submissions and forge webhooks alike
go through the rate limit, the repository check and one all-or-nothing write that creates the feature with
its queued event.

The repository host check resolves the host (DNS) to refuse internal addresses. A host that passed is not
resolved again for `HOST_CHECK_SECONDS`: the gateway's check is an early refusal, while the worker resolves
the host again when it clones and pins git to the addresses it checked then (`service_feature.git`), so a
name re-pointed inside that window still cannot reach an internal address. A refusal is never remembered.
"""

import time
from collections.abc import Callable

from fastapi import HTTPException, status

from service_feature.auth import Principal
from service_feature.gateway.deps import Gateway
from service_feature.git import RepositoryRefused, check_repository_host, check_repository_url
from service_feature.models import FeatureRequest
from service_feature.store.features import admit_feature
from service_feature.store.tables import Feature

HOST_CHECK_SECONDS = 10.0
_HOST_CHECKS_KEPT = 1024  # a bound on memory: past it the oldest are forgotten

clock: Callable[[], float] = time.monotonic  # a module attribute, so a test can move time on
# (url, allow-list) → when its passing check expires, by `clock`
_passed_host_checks: dict[tuple[str, tuple[str, ...]], float] = {}


async def limit_rate(gateway: Gateway, principal: Principal) -> None:
    if (wait := await gateway.submissions.hit(principal.key_id)) is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"over {gateway.settings.submit_rate_per_minute} submissions a minute for this key",
            headers={"Retry-After": str(wait)},
        )


async def check_repository(gateway: Gateway, request: FeatureRequest) -> None:
    settings = gateway.settings
    allowlist = settings.repository_hosts
    try:
        url = check_repository_url(
            request.repository_url, allow_local=settings.allow_local_repositories, allowlist=allowlist
        )
        await check_host_briefly_remembered(url, tuple(allowlist))
    except RepositoryRefused as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "repository_url"], "msg": str(error), "type": "value_error"}],
        ) from None


async def check_host_briefly_remembered(url: str, allowlist: tuple[str, ...]) -> None:
    """`check_repository_host`, skipped when the same URL passed it within HOST_CHECK_SECONDS."""
    key = (url, allowlist)
    now = clock()
    if _passed_host_checks.get(key, 0.0) > now:
        return
    await check_repository_host(url, allowlist=allowlist)
    remember_host_check(key, now + HOST_CHECK_SECONDS)


def remember_host_check(key: tuple[str, tuple[str, ...]], expires: float) -> None:
    _passed_host_checks.pop(key, None)  # re-inserted last: the dict's order is the order of expiry
    _passed_host_checks[key] = expires
    while len(_passed_host_checks) > _HOST_CHECKS_KEPT:
        del _passed_host_checks[next(iter(_passed_host_checks))]


def forget_host_checks() -> None:
    """Resolve every host afresh from now on."""
    _passed_host_checks.clear()


async def create_request(gateway: Gateway, request: FeatureRequest, principal: Principal) -> Feature | None:
    """The new feature with its queued event; None when the execution_id is taken, even by a concurrent
    submission that committed between our look and our insert (the unique key says so). 429 when the key
    has SF_MAX_QUEUED_PER_KEY features not yet ended; a repeated execution_id is answered first."""
    limit = gateway.settings.max_queued_per_key
    admission = await admit_feature(gateway.database, request, submitted_by=principal.key_id, max_open=limit)
    if admission.feature is not None:
        return admission.feature
    if admission.taken or admission.open_features < limit:
        return None
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"this key has {admission.open_features} features not yet ended, the most allowed "
        "(SF_MAX_QUEUED_PER_KEY); wait for one to end or cancel one",
    )
