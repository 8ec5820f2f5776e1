"""`python -m db upgrade`: the one way a database is brought up to date, locally
(make dev, make test) and in a deployment. The pending migrations and the current
definitions in db/schema/ go in one transaction (db/definitions.py).

A deploy that can't have the ledger's tables within the lock timeout (a long
transaction holds one), or that a live posting deadlocks with, changed nothing: it is
tried again a few times, with a pause in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, before_sleep_log, retry_if_exception, stop_after_attempt, wait_exponential

REPO = Path(__file__).resolve().parent.parent
LOCK_CONFLICTS = ("55P03", "40P01")  # lock_not_available (the lock timeout), deadlock_detected
log = logging.getLogger("db.upgrade")


class SchemaAhead(Exception):
    """The database is at revisions this release's migrations don't know: a later release
    migrated it, and this one (a rollback) left it as it was."""

    def __init__(self, revisions: list[str]) -> None:
        super().__init__(f"the schema is ahead of this release (at {', '.join(revisions)}): nothing changed")
        self.revisions = revisions


def upgrade(
    url: str | URL, attempts: int = 5, password: str | None = None, creator: Callable[[], Any] | None = None
) -> bool:
    """Migrate to the heads and bring the definitions up to date; returns whether the
    definitions were re-created. `password`, if given, is the owner's, for a `url`
    without one: it goes to the driver, never into a string. `creator`, if given, opens
    each connection instead (the Cloud SQL connector: db/connect.py). Raises SchemaAhead,
    having changed nothing, when a later release has already migrated the database."""
    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "db"))
    engine_url = make_url(url)
    if password is not None:
        engine_url = engine_url.set(password=password)
    config.attributes["url"] = engine_url  # db/env.py: an object, so the password is never rendered
    config.attributes["with_definitions"] = True
    config.attributes["creator"] = creator
    for attempt in Retrying(
        retry=retry_if_exception(_lock_conflict),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=1, max=15),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    ):
        with attempt:
            command.upgrade(config, "heads")
    if config.attributes.get("schema_ahead"):
        raise SchemaAhead(config.attributes["schema_ahead"])
    return bool(config.attributes.get("definitions_rebuilt"))


def _lock_conflict(error: BaseException) -> bool:
    if not isinstance(error, DBAPIError) or not error.orig.args:
        return False
    fields = error.orig.args[0]
    return isinstance(fields, dict) and fields.get("C") in LOCK_CONFLICTS
