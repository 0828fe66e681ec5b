"""Live event streams (Server-Sent Events): one feature's events, or every visible feature's."""

from fastapi import APIRouter

from service_feature.gateway.route import GatewayRoute

streams_router = APIRouter(prefix="/api/v1", tags=["streams"], route_class=GatewayRoute)
