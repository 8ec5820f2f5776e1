"""Connections to Postgres against real servers: a throw-away PostgreSQL with TLS whose
certificate comes from a CA made here, a black hole (a port that takes connections and
never answers), and a proxy that goes silent mid-session.

The Cloud SQL connector cannot run without Google Cloud, so the connector's path runs
through LoopbackConnector, which opens its connection exactly as the connector (1.23)
does for pg8000: its own socket, without a timeout, handed to the connector's pg8000
module. pytest-timeout turns a hang into a failure.
"""

import datetime
import ipaddress
import os
import secrets
import shutil
import socket
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common import bootstrap
from common.adapters.postgres import Pool, run_with_retry
from common.config import Settings
from common.errors import DependencyUnavailable
from emulators.stack import Stack

# A port of the test stack's reserved block that none of its services takes (+0..+5,
# functions from +10; test_postgres_versions.py uses +9).
PORT_OFFSET = 8
HANG = pytest.mark.timeout(60)  # a hang is the failure these tests look for


@pytest.fixture(autouse=True)
def money_invariants():
    """No ledger data here: the test stack is not needed."""
    yield


# Certificates -------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )  # digital signature, cert sign, CRL sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, ip: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("ledger test database"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


# Servers ------------------------------------------------------------------------------


class TlsDatabase:
    """A throw-away cluster with ssl = on, its certificate for 127.0.0.1 only, signed by
    `ca_file`'s CA; `login` a role of its own."""

    def __init__(self, tmp: Path) -> None:
        self.cluster = Stack("conn", port_base=Stack("test").port_base + PORT_OFFSET, state_dir=tmp / "stack")
        ca_key, ca = make_ca("ledger test CA")
        self.ca_file = tmp / "ca.pem"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        _, other_ca = make_ca("ledger test CA")  # same name, another key: must not be trusted
        self.other_ca_file = tmp / "other-ca.pem"
        self.other_ca_file.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
        self._server = make_server_cert(ca_key, ca, "127.0.0.1")
        self.login, self.password = "conn_probe", secrets.token_hex(16)

    def start(self) -> None:
        Stack("test").reserve_ports()  # its block holds our port; the test stack itself may be down
        self.cluster.start_postgres()
        data = self.cluster.pg_dir / "data"
        key, cert = self._server
        _write_key(key, data / "server.key")
        (data / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        user = self.cluster._pg_user()
        for name in ("server.key", "server.crt"):
            os.chmod(data / name, 0o600)
            if user:
                shutil.chown(data / name, user, user)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        self.cluster.psql("SELECT pg_reload_conf()")
        self.cluster.psql(f"CREATE ROLE {self.login} LOGIN PASSWORD '{self.password}'")
        assert self.cluster.psql("SHOW ssl").strip() == "on"

    @property
    def port(self) -> int:
        return self.cluster.ports["postgres"]

    def settings(self, **overrides) -> Settings:
        values = {
            "db_host": "127.0.0.1",
            "db_port": self.port,
            "db_name": "postgres",
            "db_user": self.login,
            "db_password": self.password,
            "db_sslmode": "verify-full",
            "db_sslrootcert": str(self.ca_file),
            "db_connect_timeout_s": 3.0,
            "db_statement_timeout_ms": 500,
        }
        return Settings(**{**values, **overrides})


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    db = TlsDatabase(tmp_path_factory.mktemp("tls"))
    try:
        db.start()
        yield db
    finally:
        db.cluster.stop_postgres()


@pytest.fixture
def black_hole():
    """A port whose connections the kernel completes and nobody ever reads or answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield listener.getsockname()[1]
    listener.close()


class SilenceableProxy:
    """Forwards TCP to a server until silenced, then swallows every byte both ways while
    keeping the connections open: a peer gone dark mid-session."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.silenced = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.silenced.is_set():
                    target.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


class LoopbackConnector:
    """What google.cloud.sql.connector's Connector.connect(instance, "pg8000", ...) does
    after its refresh, pointed at a loopback port: a socket opened without a timeout,
    given to the connector's own pg8000 module with the rest of the kwargs."""

    def __init__(self, port: int, password: str) -> None:
        self.port, self.password = port, password

    def connect(self, instance: str, driver: str, **kwargs):
        from google.cloud.sql.connector import pg8000 as connector_pg8000

        assert driver == "pg8000"
        kwargs.pop("enable_iam_auth")
        kwargs.pop("ip_type")
        sock = socket.create_connection(("127.0.0.1", self.port))
        # IAM authentication rides on the connector's client certificate; here, a password
        return connector_pg8000.connect("127.0.0.1", sock, password=self.password, **kwargs)


def pool_of(settings: Settings, connector=None) -> Pool:
    return Pool(lambda: bootstrap.connect_postgres(settings, connector=connector), size=1, max_age_s=60)


def using_tls(pool: Pool) -> bool:
    return run_with_retry(pool, lambda con: con.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))[0][0]


def select_one(pool: Pool) -> int:
    return run_with_retry(pool, lambda con: con.run("SELECT 1"))[0][0]


# TLS ----------------------------------------------------------------------------------


def test_the_servers_certificate_from_the_trusted_ca_for_the_host_connects_with_tls(database):
    assert using_tls(pool_of(database.settings())) is True


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param({"db_sslrootcert": "other"}, id="a CA that did not sign it"),
        pytest.param({"db_sslrootcert": ""}, id="the system's CAs"),
        pytest.param({"db_host": "localhost"}, id="a name the certificate does not carry"),
    ],
)
def test_a_certificate_that_does_not_check_out_is_refused_as_503(database, wrong):
    if wrong.get("db_sslrootcert") == "other":
        wrong = {"db_sslrootcert": str(database.other_ca_file)}
    with pytest.raises(DependencyUnavailable) as refused:
        using_tls(pool_of(database.settings(**wrong)))
    assert refused.value.status == 503


def test_disable_on_loopback_connects_without_tls(database):
    assert using_tls(pool_of(database.settings(db_sslmode="disable"))) is False


# Time bounds --------------------------------------------------------------------------


@HANG
@pytest.mark.parametrize("mode", ["disable", "verify-full"])
def test_a_direct_connection_to_a_black_hole_ends_as_503(black_hole, mode):
    settings = Settings(db_port=black_hole, db_sslmode=mode, db_connect_timeout_s=0.3, db_statement_timeout_ms=200)
    with pytest.raises(DependencyUnavailable):
        select_one(pool_of(settings))


@HANG
def test_a_connector_connection_to_a_black_hole_ends_as_503(black_hole):
    settings = Settings(db_instance="p:r:i", db_connect_timeout_s=0.3, db_statement_timeout_ms=200)
    with pytest.raises(DependencyUnavailable):
        select_one(pool_of(settings, LoopbackConnector(black_hole, "unused")))


@HANG
def test_a_connector_connection_that_goes_silent_mid_session_ends_as_503(database):
    proxy = SilenceableProxy(database.port)
    try:
        settings = database.settings(db_instance="p:r:i")
        pool = pool_of(settings, LoopbackConnector(proxy.port, database.password))
        assert select_one(pool) == 1
        proxy.silenced.set()
        with pytest.raises(DependencyUnavailable):
            select_one(pool)
    finally:
        proxy.close()
