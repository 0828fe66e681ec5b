"""The web dashboard, served by the gateway at `/`."""

from fastapi import APIRouter

dashboard_router = APIRouter(include_in_schema=False)
