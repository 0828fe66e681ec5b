"""structlog set-up: console lines for people, JSON lines (LOG_FORMAT=json) for log collectors.

Every line is masked before it is written: the secrets the process was configured with (tokens, keys,
passwords in its settings, registered by `register_secrets`) wherever they appear, and secret-looking
text (bearer tokens, passwords in URLs, `token=…` assignments, known key formats), so that an error message
quoting a request or a command line cannot carry a credential into a log collector.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from service_feature.llm.redact import redact

_SECRETS: set[str] = set()
_SHORTEST_SECRET = 8  # shorter values would mask ordinary words
MASK = "[REDACTED]"


def register_secrets(*values: str | None) -> None:
    """Mask these values in every log line from now on."""
    _SECRETS.update(value for value in values if value and len(value) >= _SHORTEST_SECRET)


def mask(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    return redact(text)


def _mask_event(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = mask(value)
        elif not isinstance(value, int | float | bool | type(None)):
            event_dict[key] = mask(str(value))
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_event,  # after the traceback is text, so that it is masked too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)
