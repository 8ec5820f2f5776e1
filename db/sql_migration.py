"""Shared helper for migrations that are plain SQL files in db/migrations/."""

from pathlib import Path

from alembic import op

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def run_sql_file(name: str) -> None:
    op.get_bind().exec_driver_sql((MIGRATIONS_DIR / name).read_text())
