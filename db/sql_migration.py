"""Shared helper for migrations that are plain SQL files in db/sql/."""

from pathlib import Path

from alembic import op

SQL_DIR = Path(__file__).resolve().parent / "sql"


def run_sql_file(name: str) -> None:
    op.get_bind().exec_driver_sql((SQL_DIR / name).read_text())
