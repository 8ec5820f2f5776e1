"""How a connection to Postgres is opened: TLS that always checks the server, and a
bound on every network call, on both paths (direct TCP and the Cloud SQL connector).

TLS: `verify-full` checks the server's certificate against a CA (LEDGER_DB_SSLROOTCERT,
else the system's store) and its name against the host; `disable` (no TLS) is allowed
only towards a loopback address, where the local stack or the Cloud SQL Auth Proxy
listens. libpq's `prefer` and `require` encrypt without checking who answers, so an
attacker on the path reads everything; common/config.py refuses them when the
settings load.

Timeouts: pg8000 applies its `timeout` to the socket only when it opens that socket
itself. The Cloud SQL connector (1.23) opens the socket without a timeout and hands it
to pg8000, which then ignores `timeout`, so a black-holed connection would hold its
caller (and an instance's single group-commit slot) forever. Here the connector's
connect is waited for at most the connect timeout, and the socket it returns gets the
same per-operation timeout as a direct connection's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl


@lru_cache(maxsize=4)
def tls_context(mode: str, root_cert: str = "") -> ssl.SSLContext | bool:
    """pg8000's ssl_context: False for no TLS, else a context that requires a valid
    certificate for the host. Built once per setting and shared by every connect:
    loading a CA store costs milliseconds (bench/results/imports.md), and a context is
    safe to share between threads."""
    if mode == "disable":
        return False
    import ssl  # here, not at import: a function on the local stack never needs it

    if mode != "verify-full":
        raise ValueError(f"LEDGER_DB_SSLMODE={mode!r} is not a mode that checks the server")
    # create_default_context: CERT_REQUIRED and check_hostname, TLS 1.2 or newer
    return ssl.create_default_context(cafile=root_cert or None)


def per_operation_timeout_s(connect_timeout_s: float, statement_timeout_ms: int) -> float:
    """The longest any one socket read or write may take: a statement may run up to its
    server-side timeout before its first byte of answer comes back."""
    return connect_timeout_s + statement_timeout_ms / 1000


def connector_kwargs(
    user: str, database: str, iam_auth: bool, startup: dict[str, str], timeout_s: float
) -> dict[str, Any]:
    """What Connector.connect() passes on to pg8000 (and its own connect timeout)."""
    return {
        "user": user,
        "db": database,
        "enable_iam_auth": iam_auth,
        "ip_type": "private",
        "startup_params": startup,
        "application_name": "wallet-ledger",
        "timeout": timeout_s,
    }


def connect_within(connect: Callable[[], Any], timeout_s: float) -> Any:
    """connect() in a thread of its own, waited for at most timeout_s; then TimeoutError
    (a 503 at the edge). A connection that arrives after its caller gave up is closed.
    The thread may stay blocked on the dead peer until the operating system gives up,
    but no request waits for it."""
    done = threading.Event()
    lock = threading.Lock()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            result = connect()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting caller
            outcome["error"] = error
        else:
            with lock:
                abandoned = outcome.get("abandoned", False)
                outcome["connection"] = result
            if abandoned:
                _close_quietly(result)
        done.set()

    threading.Thread(target=run, name="postgres-connect", daemon=True).start()
    if not done.wait(timeout_s):
        with lock:
            if "connection" not in outcome:
                outcome["abandoned"] = True
                raise TimeoutError(f"no database connection within {timeout_s} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["connection"]


def bound_socket(connection: Any, timeout_s: float) -> Any:
    """Give a connection made on a socket someone else opened (the connector's) the
    per-operation timeout pg8000 would have set on its own socket."""
    connection._usock.settimeout(timeout_s)
    return connection


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a half-open connection may fail too
        pass
