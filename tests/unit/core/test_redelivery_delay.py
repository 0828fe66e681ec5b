"""How long a failed step's message waits before it comes again."""

from service_feature.bus.nats import redelivery_delay
from service_feature.errors import TransientError
from service_feature.forges.base import ForgeUnavailable


def test_back_off_doubles_up_to_thirty_seconds() -> None:
    assert [redelivery_delay(n, RuntimeError("x")) for n in (1, 2, 4, 5, 9)] == [2.0, 4.0, 16.0, 30.0, 30.0]


def test_a_remote_that_asked_for_longer_is_left_alone_that_long_up_to_fifteen_minutes() -> None:
    limited = ForgeUnavailable("github (https://api.github.com)", "rate limited", 429, retry_after=600.0)
    assert isinstance(limited, TransientError)
    assert redelivery_delay(1, limited) == 600.0
    hour = ForgeUnavailable("github (https://api.github.com)", "rate limited", 403, retry_after=3600.0)
    assert redelivery_delay(1, hour) == 900.0
    assert redelivery_delay(5, ForgeUnavailable("gitea", "502", 502)) == 30.0
