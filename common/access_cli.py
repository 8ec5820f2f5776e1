"""`python -m common.access_cli`: the operators' command line for callers.

principal add ID --kind K [--tenant T] [--owner-id O] [--issuer I] [--subject S]
principal list | show ID | disable ID | enable ID | limits ID (JSON | --clear)
grant add PRINCIPAL ROLE --boundary own|tree|all [--root WALLET_ID]
grant revoke GRANT_ID
role list | limits NAME JSON
change list [--status S] | approve ID | reject ID
audit [--target T] [--after N] [--limit N]
bootstrap-operator ID        one of the first two operators of a fresh deployment, as the database owner

Every command but bootstrap-operator calls the access function's HTTP API with an
operator's token (--token, or LEDGER_TOKEN), so the command line is held to the same
authorization, dual control and audit as any other caller: nothing here goes around
them. Writes take --reason, kept in the audit log. Answers are printed as JSON; an
error answer exits 1 with its code and message.

bootstrap-operator is the one exception, for a deployment where no operators exist
yet to call the API: it connects to Postgres as the database owner and registers one
of the first two operators (ledger.bootstrap_operator(), audited with the actor
{"principal": "bootstrap:<os user>"}). Run it twice: every later operator's grant waits
for a second operator's approval, so one alone could approve nothing. It refuses once
two active principals hold grants admin over every wallet: from then on, operators add
operators (and a second one approves).
"""

from __future__ import annotations

import getpass
import importlib
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import click

TIMEOUT_S = 30.0
REASON = click.option("--reason", default=None, help="Why; kept with the change in the audit log.")


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _dev_stack() -> Any:
    """The local dev stack, for the defaults only (a deployment names its own). Imported
    by name: emulators/ is not part of a function's bundle, which ships common/."""
    return importlib.import_module("emulators.stack").Stack("dev")


def _json_argument(raw: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise click.BadParameter(f"{what} is not JSON: {raw}") from None


@dataclass
class Api:
    url: str | None
    token: str | None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **query: Any) -> Any:
        if not self.token:
            raise click.ClickException("give an operator's token: --token or LEDGER_TOKEN (locally: make token P=ops)")
        url = (self.url or _dev_stack().function_url("access")).rstrip("/") + path
        given = {name: value for name, value in query.items() if value is not None}
        if given:
            url += "?" + urllib.parse.urlencode(given)
        request = urllib.request.Request(
            url,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise click.ClickException(_failure(error.code, error.read())) from None
        except urllib.error.URLError as error:
            raise click.ClickException(f"the access function at {url} is unreachable: {error.reason}") from None


def _failure(status: int, raw: bytes) -> str:
    try:
        problem = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        return f"{status}: {raw[:200]!r}"
    details = f" {json.dumps(problem['details'], sort_keys=True)}" if problem.get("details") is not None else ""
    return f"{status} {problem.get('code')}: {problem.get('message')}{details}"


def _with_reason(body: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return body if reason is None else {**body, "reason": reason}


@click.group()
@click.option(
    "--url", envvar="LEDGER_ACCESS_URL", default=None, help="The access function's URL [default: the dev stack's]."
)
@click.option("--token", envvar="LEDGER_TOKEN", default=None, help="An operator's bearer token [env LEDGER_TOKEN].")
@click.pass_context
def main(ctx: click.Context, url: str | None, token: str | None) -> None:
    ctx.obj = Api(url, token)


# Principals ----------------------------------------------------------------------


@main.group()
def principal() -> None:
    """Callers: a token's issuer and subject, with a kind and a tenant."""


@principal.command("add")
@click.argument("principal_id")
@click.option("--kind", type=click.Choice(["service", "user", "operator"]), required=True)
@click.option("--tenant", default=None, help="Scopes its idempotency keys [default: the id].")
@click.option("--owner-id", default=None, help="The wallet owner an end user is (the `own` boundary).")
@click.option("--issuer", envvar="LEDGER_ISSUER", default=None, help="The token's iss [default: the dev stack's].")
@click.option("--subject", default=None, help="The token's sub [default: the id].")
@click.option("--description", default="")
@click.option("--rate-limits", default=None, help='An override, e.g. \'{"money": {"per_second": 5, "burst": 10}}\'.')
@REASON
@click.pass_obj
def principal_add(api: Api, principal_id: str, kind: str, tenant: str | None, owner_id: str | None,
                  issuer: str | None, subject: str | None, description: str, rate_limits: str | None,
                  reason: str | None) -> None:  # fmt: skip
    body: dict[str, Any] = {
        "id": principal_id,
        "kind": kind,
        "tenant": tenant or principal_id,
        "issuer": issuer or _dev_stack().issuer,
        "description": description,
    }
    optional = {"owner_id": owner_id, "subject": subject}
    body.update({name: value for name, value in optional.items() if value is not None})
    if rate_limits is not None:
        body["rate_limits"] = _json_argument(rate_limits, "--rate-limits")
    _print(api.call("POST", "/principals", _with_reason(body, reason)))


@principal.command("list")
@click.option("--after", default=None, help="The last id of the previous page.")
@click.option("--limit", type=int, default=None)
@click.pass_obj
def principal_list(api: Api, after: str | None, limit: int | None) -> None:
    _print(api.call("GET", "/principals", after=after, limit=limit))


@principal.command("show")
@click.argument("principal_id")
@click.pass_obj
def principal_show(api: Api, principal_id: str) -> None:
    _print(api.call("GET", f"/principals/{urllib.parse.quote(principal_id)}"))


def _set_status(api: Api, principal_id: str, status: str, reason: str | None) -> None:
    body = _with_reason({"status": status}, reason)
    _print(api.call("PATCH", f"/principals/{urllib.parse.quote(principal_id)}", body))


@principal.command("disable")
@click.argument("principal_id")
@REASON
@click.pass_obj
def principal_disable(api: Api, principal_id: str, reason: str | None) -> None:
    """Its tokens are refused (403) once instances' caches expire (LEDGER_AUTH_PRINCIPAL_TTL_S)."""
    _set_status(api, principal_id, "disabled", reason)


@principal.command("enable")
@click.argument("principal_id")
@REASON
@click.pass_obj
def principal_enable(api: Api, principal_id: str, reason: str | None) -> None:
    _set_status(api, principal_id, "active", reason)


@principal.command("limits")
@click.argument("principal_id")
@click.argument("rate_limits", required=False)
@click.option("--clear", is_flag=True, help="Remove the override: the roles' limits apply again.")
@REASON
@click.pass_obj
def principal_limits(api: Api, principal_id: str, rate_limits: str | None, clear: bool, reason: str | None) -> None:
    """Set the principal's rate-limit override (JSON), or --clear it."""
    if clear == (rate_limits is not None):
        raise click.UsageError("give the override as JSON, or --clear")
    limits = None if clear else _json_argument(rate_limits or "", "the override")
    body = _with_reason({"rate_limits": limits}, reason)
    _print(api.call("PATCH", f"/principals/{urllib.parse.quote(principal_id)}", body))


# Grants --------------------------------------------------------------------------


@main.group()
def grant() -> None:
    """A role for a principal within a boundary."""


@grant.command("add")
@click.argument("principal_id")
@click.argument("role")
@click.option("--boundary", type=click.Choice(["own", "tree", "all"]), required=True)
@click.option("--root", "root_wallet_id", type=int, default=None, help="The tree's top wallet (boundary tree).")
@REASON
@click.pass_obj
def grant_add(api: Api, principal_id: str, role: str, boundary: str, root_wallet_id: int | None,
              reason: str | None) -> None:  # fmt: skip
    """Active at once, or pending until a second operator approves (change approve)."""
    body: dict[str, Any] = {"role": role, "boundary": boundary}
    if root_wallet_id is not None:
        body["root_wallet_id"] = root_wallet_id
    _print(api.call("POST", f"/principals/{urllib.parse.quote(principal_id)}/grants", _with_reason(body, reason)))


@grant.command("revoke")
@click.argument("grant_id", type=int)
@REASON
@click.pass_obj
def grant_revoke(api: Api, grant_id: int, reason: str | None) -> None:
    _print(api.call("POST", f"/grants/{grant_id}/revoke", _with_reason({}, reason)))


# Roles ---------------------------------------------------------------------------


@main.group()
def role() -> None:
    """Roles: their scopes (fixed by migrations) and rate limits."""


@role.command("list")
@click.pass_obj
def role_list(api: Api) -> None:
    _print(api.call("GET", "/roles"))


@role.command("limits")
@click.argument("name")
@click.argument("rate_limits")
@REASON
@click.pass_obj
def role_limits(api: Api, name: str, rate_limits: str, reason: str | None) -> None:
    """Set a role's rate limits, e.g. '{"money": {"per_second": 50, "burst": 100}}'."""
    body = _with_reason({"rate_limits": _json_argument(rate_limits, "the rate limits")}, reason)
    _print(api.call("PATCH", f"/roles/{urllib.parse.quote(name)}", body))


# Dual control --------------------------------------------------------------------


@main.group()
def change() -> None:
    """Changes waiting for a second operator: grants and credit limits."""


@change.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "all"]), default="pending")
@click.option("--after", type=int, default=None)
@click.option("--limit", type=int, default=None)
@click.pass_obj
def change_list(api: Api, status: str, after: int | None, limit: int | None) -> None:
    _print(api.call("GET", "/changes", status=status, after=after, limit=limit))


@change.command("approve")
@click.argument("change_id", type=int)
@REASON
@click.pass_obj
def change_approve(api: Api, change_id: int, reason: str | None) -> None:
    _print(api.call("POST", f"/changes/{change_id}/approve", _with_reason({}, reason)))


@change.command("reject")
@click.argument("change_id", type=int)
@REASON
@click.pass_obj
def change_reject(api: Api, change_id: int, reason: str | None) -> None:
    _print(api.call("POST", f"/changes/{change_id}/reject", _with_reason({}, reason)))


# The audit log -------------------------------------------------------------------


@main.command()
@click.option("--target", default=None, help="principal:<id>, role:<name>, change:<id>, wallet:<id>, asset:<code>")
@click.option("--after", type=int, default=None, help="The last id of the previous page.")
@click.option("--limit", type=int, default=None)
@click.pass_obj
def audit(api: Api, target: str | None, after: int | None, limit: int | None) -> None:
    _print(api.call("GET", "/audit", target=target, after=after, limit=limit))


# The first operator --------------------------------------------------------------


# Whoever could already manage callers through the API.
def bootstrap_operator(con: Any, principal_id: str, issuer: str, subject: str, tenant: str, actor: str) -> int:
    """Register one of the first two operators (role operator over every wallet) on an
    owner's pg8000 connection, through ledger.bootstrap_operator(); the new grant's id.
    The database refuses (operators_exist) once two operators exist."""
    rows = con.run(
        "SELECT ledger.bootstrap_operator(:id, :issuer, :subject, :tenant, CAST(:actor AS jsonb))",
        id=principal_id,
        issuer=issuer,
        subject=subject,
        tenant=tenant,
        actor=json.dumps({"principal": actor}),
    )
    return int(rows[0][0])


def _owner_dsn(url: str | None) -> dict[str, Any]:
    if url is None:
        return dict(_dev_stack().owner_dsn())
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.username:
        raise click.BadParameter("expected postgresql://OWNER[:PASSWORD]@HOST[:PORT]/DATABASE")
    return {
        "user": urllib.parse.unquote(parts.username),
        "password": urllib.parse.unquote(parts.password or ""),
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "database": parts.path.lstrip("/") or "ledger",
    }


@main.command("bootstrap-operator")
@click.argument("principal_id")
@click.option("--issuer", envvar="LEDGER_ISSUER", default=None, help="The token's iss [default: the dev stack's].")
@click.option("--subject", default=None, help="The token's sub [default: the id].")
@click.option("--tenant", default=None, help="[default: the id]")
@click.option(
    "--database-url",
    envvar="LEDGER_OWNER_DATABASE_URL",
    default=None,
    help="postgresql://OWNER:PASSWORD@HOST:PORT/DATABASE, the database owner [default: the dev stack's].",
)
def bootstrap_operator_command(principal_id: str, issuer: str | None, subject: str | None, tenant: str | None,
                               database_url: str | None) -> None:  # fmt: skip
    """Register one of the first two operators directly in Postgres, as the database owner."""
    import pg8000.native

    from common.errors import DATABASE_REFUSALS

    con = pg8000.native.Connection(**_owner_dsn(database_url))
    try:
        grant_id = bootstrap_operator(
            con,
            principal_id,
            issuer or _dev_stack().issuer,
            subject or principal_id,
            tenant or principal_id,
            f"bootstrap:{getpass.getuser()}",
        )
    except pg8000.native.DatabaseError as error:
        fields = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
        if fields.get("M") in DATABASE_REFUSALS:
            raise click.ClickException(f"{fields['M']}: {fields.get('D')}") from None
        raise
    finally:
        con.close()
    _print({"principal": principal_id, "role": "operator", "boundary": "all", "grant_id": grant_id})


if __name__ == "__main__":
    main()
