"""The local stack's database logins and their passwords.

In Google Cloud every function logs in as its own IAM database user with IAM
authentication, and there are no passwords. Locally each kind of login
(infra/functions.py DATABASE_LOGINS, the operator's, and the in-process service's of
the tests) is a password login in its role, and the passwords are drawn at random for
each stack and kept in its state directory (a 0600 file), never in the code: a login's
password is only good for the stack that drew it. They reach the functions and tools
by environment (LEDGER_DB_PASSWORD, PGPASSWORD), never by command line, and the SQL
that sets them goes to psql on its standard input.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from infra.functions import DATABASE_LOGINS, OPERATOR_LOGIN, OPERATOR_ROLE

OWNER = "ledger_owner"  # owns the schema and runs the migrations; no function or operator uses it
SUPERUSER = "postgres"  # the cluster's; the stack reaches it over the Unix socket only
# The tests drive the service in-process, money and admin through one pool (and the
# benchmarks their core procedures): a local-only login in every role a function of
# the ledger service has. The access function's role is not among them: the tests
# reach it through their own pool (tests/support.py access_pool).
IN_PROCESS = "in_process"
_IN_PROCESS_ROLES = ("ledger_poster", "ledger_wallet_admin", "ledger_relay", "ledger_jobs")
# Logins of stacks made before each function kind had its own role: left without LOGIN.
RETIRED_USERS = ("ledger_fn", "ledger_erp")


@dataclass(frozen=True)
class Login:
    user: str
    roles: tuple[str, ...]


# login -> its local user and the roles it is in; a function's is its role's name + _fn
LOGINS: dict[str, Login] = {
    **{login: Login(f"{role}_fn", (role,)) for login, role in DATABASE_LOGINS.items()},
    OPERATOR_LOGIN: Login(f"{OPERATOR_ROLE}_fn", (OPERATOR_ROLE,)),
    IN_PROCESS: Login("ledger_in_process", _IN_PROCESS_ROLES),
}


class Passwords:
    """passwords.json in a stack's state directory: user -> password, each drawn once."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "passwords.json"

    def __getitem__(self, user: str) -> str:
        known = self._read()
        if user not in known:
            known[user] = secrets.token_urlsafe(24)
            self._write(known)
        return known[user]

    def _read(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _write(self, known: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # created 0600 before anything is written to it, then swapped in whole
        draft = self.path.with_suffix(".tmp")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(known, out)
        os.replace(draft, self.path)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ensure_sql(passwords: Passwords) -> str:
    """The SQL, for the superuser, that makes every login exist in its roles with this
    stack's password, on a new stack or one made before (whose logins had others)."""
    statements = [f"ALTER ROLE {OWNER} PASSWORD {_literal(passwords[OWNER])};"]
    for login in LOGINS.values():
        for role in login.roles:
            statements.append(f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
    CREATE ROLE {role} NOLOGIN;
  END IF;
END $$;
GRANT {role} TO {OWNER} WITH ADMIN OPTION;""")
        statements.append(f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{login.user}') THEN
    CREATE ROLE {login.user} LOGIN;
  END IF;
END $$;
GRANT {", ".join(login.roles)} TO {login.user};
ALTER ROLE {login.user} LOGIN PASSWORD {_literal(passwords[login.user])};
ALTER ROLE {login.user} SET search_path = ledger;""")
    for user in RETIRED_USERS:
        statements.append(f"""
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{user}') THEN
    ALTER ROLE {user} NOLOGIN PASSWORD NULL;
  END IF;
END $$;""")
    return "\n".join(statements)
