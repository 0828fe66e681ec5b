"""What every way of submitting a feature checks and does: the API's submissions and forge webhooks alike
go through the rate limit, the repository check and one transaction that creates the feature with its
queued event."""

from fastapi import HTTPException, status
from sqlalchemy.exc import IntegrityError

from service_feature.auth import Principal
from service_feature.gateway.deps import Gateway
from service_feature.git import RepositoryRefused, check_repository_host, check_repository_url
from service_feature.models import FeatureRequest
from service_feature.store.features import count_open_features, create_feature, find_feature
from service_feature.store.tables import Feature


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
        await check_repository_host(url, allowlist=allowlist)
    except RepositoryRefused as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "repository_url"], "msg": str(error), "type": "value_error"}],
        ) from None


async def create_request(gateway: Gateway, request: FeatureRequest, principal: Principal) -> Feature | None:
    """The new feature with its queued event; None when the execution_id is taken, even by a concurrent
    submission that committed between our look and our insert (the unique key says so)."""
    try:
        async with gateway.database.transaction() as session:
            if await find_feature(session, request.execution_id) is not None:
                return None
            queued = await count_open_features(session, principal.key_id)
            if queued >= gateway.settings.max_queued_per_key:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    detail=f"this key has {queued} features not yet ended, the most allowed "
                    "(SF_MAX_QUEUED_PER_KEY); wait for one to end or cancel one",
                )
            return await create_feature(session, request, submitted_by=principal.key_id)
    except IntegrityError:
        return None
