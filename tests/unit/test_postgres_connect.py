"""How a Postgres connection is opened: TLS that checks the server, and time bounds on
the connector's path (the real server, with TLS and a black hole: tests/integration/test_db_connections.py)."""

import ssl
import threading

import pytest

from common import bootstrap
from common.adapters import postgres_connect as pc
from common.config import Settings


def test_verify_full_requires_a_valid_certificate_for_the_host():
    context = pc.tls_context("verify-full")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True


def test_disable_means_no_tls_at_all():
    assert pc.tls_context("disable") is False


@pytest.mark.parametrize("mode", ["prefer", "require"])
def test_no_context_is_built_for_a_mode_that_does_not_check(mode):
    with pytest.raises(ValueError, match="LEDGER_DB_SSLMODE"):
        pc.tls_context(mode)


def test_the_connectors_kwargs_carry_the_timeout():
    kwargs = pc.connector_kwargs("fn@p.iam", "ledger", True, {"search_path": "ledger"}, 2.5)
    assert kwargs["timeout"] == 2.5
    assert kwargs["enable_iam_auth"] is True and kwargs["ip_type"] == "private"


class StuckConnector:
    """A connector whose connect never comes back until told to (a black-holed refresh,
    TCP connect or handshake), then returns a connection."""

    def __init__(self):
        self.release = threading.Event()
        self.connection = LateConnection()
        self.kwargs = None

    def connect(self, instance, driver, **kwargs):
        self.kwargs = kwargs
        self.release.wait()
        return self.connection


class LateConnection:
    def __init__(self):
        self.closed = threading.Event()

    def close(self):
        self.closed.set()


def test_a_connector_connect_that_never_returns_ends_in_a_timeout_and_its_late_connection_is_closed():
    connector = StuckConnector()
    settings = Settings(db_instance="p:r:i", db_connect_timeout_s=0.2)
    with pytest.raises(TimeoutError):
        bootstrap.connect_postgres(settings, connector=connector)
    assert connector.kwargs["timeout"] == 0.2
    connector.release.set()
    assert connector.connection.closed.wait(10)


def test_a_connect_error_reaches_the_caller():
    def refuse():
        raise ConnectionRefusedError("no")

    with pytest.raises(ConnectionRefusedError):
        pc.connect_within(refuse, 5)
