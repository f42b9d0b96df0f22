"""Alembic, driven from code: `guestkey migrate` and `guestkey serve` call `upgrade_to_head`."""

from __future__ import annotations

import functools
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

log = structlog.get_logger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


@functools.cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade_to_head(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")
    log.info("db.migrated", revision=head_revision())
