"""How `python -m db` reaches the database as the schema's owner.

Locally (and through any proxy) a SQLAlchemy URL, its password from PGPASSWORD. In
Google Cloud the migrations job (infra/terraform/jobs.tf) logs in as its own IAM
database user through the Cloud SQL Python Connector, set by the same LEDGER_DB_INSTANCE,
LEDGER_DB_USER, LEDGER_DB_NAME and LEDGER_DB_IAM_AUTH as the functions
(common/adapters/postgres_connect.py): no password exists anywhere. Unlike a function's,
the owner's connection has no statement timeout and no search_path at startup: a
migration may run long, and names its schemas; the job's task timeout bounds a run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, pool
from sqlalchemy.engine import URL, make_url

from common.config import Settings

# SQLAlchemy needs a URL for the dialect even when a creator opens the connections.
CONNECTOR_URL = "postgresql+pg8000://"


def cloud_sql_creator(settings: Settings) -> Callable[[], Any]:
    """Opens one pg8000 connection through the Cloud SQL connector per call, each
    bounded by the connect timeout (a black-holed connect is not waited for)."""
    from google.cloud.sql.connector import Connector

    from common.adapters import postgres_connect as pc

    connector = Connector(refresh_strategy="lazy")
    kwargs = pc.connector_kwargs(
        settings.db_user, settings.db_name, settings.db_iam_auth, {}, settings.db_connect_timeout_s
    )

    def create() -> Any:
        return pc.connect_within(
            lambda: connector.connect(settings.db_instance, "pg8000", **kwargs), settings.db_connect_timeout_s
        )

    return create


def target(url: str | None, password: str | None, settings: Settings) -> tuple[URL, Callable[[], Any] | None]:
    """(URL, creator): the Cloud SQL connector when LEDGER_DB_INSTANCE is set, else `url`."""
    if settings.db_instance:
        return make_url(CONNECTOR_URL), cloud_sql_creator(settings)
    if not url:
        raise ValueError("no database: set LEDGER_MIGRATIONS_URL (or --url), or LEDGER_DB_INSTANCE in Google Cloud")
    engine_url = make_url(url)
    return (engine_url.set(password=password) if password is not None else engine_url), None


def engine(engine_url: URL, creator: Callable[[], Any] | None) -> Engine:
    return create_engine(engine_url, poolclass=pool.NullPool, **({"creator": creator} if creator else {}))
