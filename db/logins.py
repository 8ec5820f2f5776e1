"""After the migrations: each function login's IAM database user gets its database role,
and on Cloud SQL, pgaudit's object-level audit of the ledger's tables.

Terraform passes the mapping {IAM user: role} (infra/terraform/jobs.tf, from
local.database_logins) as LEDGER_DB_LOGIN_ROLES; Cloud SQL creates the IAM users
(google_sql_user) with no privileges, and only the schema's owner (the migrations job)
may grant the roles db/schema/99_grants.sql defines. A login gets only one of those
roles (never the owner, cloudsqlsuperuser, a pg_* role or a role that can log in), and
loses any other of them it held, so a login moved to another role keeps none of the old
one's rights. Every step asks first and changes only what differs, so a second run
changes nothing and says so.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# The role pgaudit's object-level audit logs for, by default (the instance flag
# pgaudit.role, var.db_pgaudit_role, passed to the job as LEDGER_DB_AUDIT_ROLE): every
# statement that uses a privilege this role holds is logged. It is granted the writes on
# the ledger's tables, so every write is logged; no one logs in as it or is a member of it.
AUDIT_ROLE = "ledger_pgaudit"
# The NOLOGIN roles db/schema/99_grants.sql creates, each a kind of function or the
# operators' (ledger_operator): the only roles a login may be mapped to.
# tests/integration/test_migrations_job.py checks each exists, NOLOGIN, after migrating.
FUNCTION_ROLES = frozenset({
    "ledger_poster", "ledger_wallet_admin", "ledger_relay", "ledger_jobs", "ledger_auditor", "ledger_operator",
    "erp_exporter", "ledger_access", "ledger_automation", "ledger_messages", "ledger_reconciler",
})  # fmt: skip
AUDITED_SCHEMAS = ("ledger", "erp")
SEARCH_PATH = "ledger"

_IS_MEMBER = """
SELECT 1 FROM pg_auth_members m
  JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
 WHERE r.rolname = :role AND u.rolname = :user
"""
_SEARCH_PATH = """
SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles u ON u.oid = s.setrole
 WHERE u.rolname = :user AND s.setdatabase = 0
"""
_ROLE_EXISTS = "SELECT 1 FROM pg_roles WHERE rolname = :role"
_CAN_LOG_IN = "SELECT rolcanlogin OR rolsuper FROM pg_roles WHERE rolname = :role"
_FUNCTION_ROLES_OF = """
SELECT r.rolname FROM pg_auth_members m
  JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
 WHERE u.rolname = :user AND r.rolname = ANY(:roles)
"""
# (can log in, has members) of a role, if it exists
_SHARED_ROLE = """
SELECT r.rolcanlogin, EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid)
  FROM pg_roles r WHERE r.rolname = :role
"""


def grant_login_roles(connection: Connection, login_roles: dict[str, str]) -> list[str]:
    """GRANT each IAM user its role, REVOKE any other function role it holds, and set its
    search_path, where not yet so; returns what changed. A role outside FUNCTION_ROLES
    is refused before anything changes; a user Cloud SQL hasn't created (or a role the
    definitions don't define) is an error: the deploy stops rather than leave a function
    unable to log in."""
    for role in sorted(set(login_roles.values())):
        can_log_in = connection.execute(text(_CAN_LOG_IN), {"role": role}).scalar()
        if role not in FUNCTION_ROLES or can_log_in:
            raise ValueError(
                f"a login may be mapped only to a function role of db/schema/99_grants.sql, not {role!r}"
                f" (one of {', '.join(sorted(FUNCTION_ROLES))})"
            )
    me = connection.execute(text("SELECT current_user")).scalar()
    if me in login_roles:
        # the schema's owner as a function's login would hand a function the whole schema
        raise ValueError(f"{me!r} runs the migrations: it is no function's login")
    changed = []
    for user, role in sorted(login_roles.items()):
        for name in (user, role):
            if not connection.execute(text(_ROLE_EXISTS), {"role": name}).first():
                raise LookupError(f"no database role {name!r}: is its google_sql_user applied, the schema up to date?")
        if not connection.execute(text(_IS_MEMBER), {"role": role, "user": user}).first():
            connection.exec_driver_sql(f"GRANT {_quote(role)} TO {_quote(user)}")
            changed.append(f"granted {role} to {user}")
        held = connection.execute(text(_FUNCTION_ROLES_OF), {"user": user, "roles": sorted(FUNCTION_ROLES)}).scalars()
        for former in sorted(set(held) - {role}):
            connection.exec_driver_sql(f"REVOKE {_quote(former)} FROM {_quote(user)}")
            changed.append(f"revoked {former} from {user}")
        settings = connection.execute(text(_SEARCH_PATH), {"user": user}).scalar() or []
        if f"search_path={SEARCH_PATH}" not in settings:
            connection.exec_driver_sql(f"ALTER ROLE {_quote(user)} SET search_path = {SEARCH_PATH}")
            changed.append(f"search_path of {user} set to {SEARCH_PATH}")
    return changed


def enable_audit(connection: Connection, with_extension: bool, role: str = AUDIT_ROLE) -> list[str]:
    """The audit role and its write privileges on every table of the ledger's schemas
    (re-granted each run, as a migration may add a table); `with_extension` (Cloud SQL,
    whose instance loads pgaudit) also creates the extension. A role that can log in or
    has members is refused: they would hold the writes granted here (ledger_auditor, say,
    which the operator's role is a member of)."""
    shared = connection.execute(text(_SHARED_ROLE), {"role": role}).first()
    if shared is not None and (shared[0] or shared[1]):
        raise ValueError(f"pgaudit.role {role!r} can log in or has members, who would get the ledger's writes")
    changed = []
    if with_extension and not connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pgaudit'")).first():
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgaudit")
        changed.append("created extension pgaudit")
    if shared is None:
        connection.exec_driver_sql(f"CREATE ROLE {_quote(role)} NOLOGIN")
        changed.append(f"created role {role}")
    schemas = ", ".join(AUDITED_SCHEMAS)
    connection.exec_driver_sql(f"GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schemas} TO {_quote(role)}")
    return changed


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
