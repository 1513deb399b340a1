"""structlog setup: key-value events, console or JSON, level from config/flags."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

import structlog

# Values computed at log time (e.g. the node's current Raft term), added to every event.
_PROVIDERS: dict[str, Callable[[], Any]] = {}


def provide(key: str, fn: Callable[[], Any]) -> None:
    """Add `key=fn()` to every log event (fn must be cheap and never raise)."""
    _PROVIDERS[key] = fn


def _add_provided(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, fn in _PROVIDERS.items():
        if key not in event:
            with contextlib.suppress(Exception):  # a log line must never fail
                event[key] = fn()
    return event


def configure(fmt: str = "console", level: str = "info", **bind: str) -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_provided,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(**bind)
    # pysyncobj logs through the standard library: route it to stderr too.
    logging.basicConfig(
        level=max(lvl, logging.WARNING),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
