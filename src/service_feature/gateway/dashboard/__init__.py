"""The web dashboard, served by the gateway at `/`: sign-in, the features list, a feature's page with its
diff, tests, review and transcript, the human decisions, and the kill switch (see docs/dashboard.md).

`dashboard_router` exists before its pages are imported: they use the feature API's route functions, and
`gateway.routes`, which includes this router, may be the module being imported first.
"""

from fastapi import APIRouter

dashboard_router = APIRouter(include_in_schema=False)

from service_feature.gateway.dashboard.pages import pages_router  # noqa: E402

dashboard_router.include_router(pages_router)
