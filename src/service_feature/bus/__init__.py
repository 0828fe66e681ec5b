"""The event bus: a small interface (`Bus`) and its NATS JetStream adapter."""

from service_feature.bus.base import Bus, Delivery, Handler, RequestHandler
from service_feature.bus.nats import NatsBus

__all__ = ["Bus", "Delivery", "Handler", "NatsBus", "RequestHandler"]
