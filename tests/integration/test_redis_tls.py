"""Memorystore's shape, on a real redis-server: TLS verified against the instance's own
CA, and AUTH. With both, the client takes a wallet lock; a wrong AUTH string, none, or
a server the CA did not sign is a dependency down (503), never a 500. The server's
certificate is shaped as Memorystore's: its IP as the CN, no subject alternative name."""

import datetime
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common.adapters.redis_locks import RedisLocks
from common.bootstrap import connect_redis
from common.config import Settings
from common.errors import DependencyUnavailable
from emulators.stack import wait_for
from tests.e2e.test_bundle import free_port

AUTH = "an-auth-string-from-secret-manager"
pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")


def pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate(subject, issuer, public_key, signing_key, *, ca):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(signing_key, hashes.SHA256())


def a_ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    return key, certificate(name, name, key.public_key(), key, ca=True)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """A redis-server on a TLS port only, with a password, its certificate signed by
    its own CA and shaped as Memorystore's is (CN = the IP, 127.0.0.1 here, no SAN), which
    a hostname check would refuse; yields (port, the CA's PEM)."""
    folder = tmp_path_factory.mktemp("tls-redis")
    ca_key, ca = a_ca("instance CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    # Memorystore's shape: the instance's IP as the CN, and no subject alternative name
    server = certificate("127.0.0.1", "instance CA", server_key.public_key(), ca_key, ca=False)
    (folder / "ca.pem").write_text(pem(ca))
    (folder / "server.pem").write_text(pem(server))
    (folder / "server.key").write_bytes(key_pem(server_key))
    port = free_port()
    subprocess.run(
        ["redis-server", "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port),
         "--tls-cert-file", str(folder / "server.pem"), "--tls-key-file", str(folder / "server.key"),
         "--tls-ca-cert-file", str(folder / "ca.pem"), "--tls-auth-clients", "no",
         "--requirepass", AUTH, "--save", "", "--appendonly", "no", "--daemonize", "yes",
         "--pidfile", str(folder / "redis.pid"), "--logfile", str(folder / "redis.log"), "--dir", str(folder)],
        check=True,
    )  # fmt: skip
    try:
        settings = Settings(redis_url=f"rediss://127.0.0.1:{port}/0", redis_auth=AUTH, redis_ca_cert=pem(ca))
        wait_for(lambda: _pings(settings), "the TLS redis-server", 10)
        yield port, pem(ca)
    finally:
        pid = (folder / "redis.pid").read_text().strip() if (folder / "redis.pid").exists() else ""
        if pid:
            subprocess.run(["kill", pid], check=False)


def _pings(settings):
    try:
        return connect_redis(settings).ping()
    except Exception:  # noqa: BLE001 - not up yet
        return False


def locks(settings):
    return RedisLocks(connect_redis(settings), ttl_ms=5000, wait_ms=50)


def test_with_the_instance_ca_and_auth_the_client_takes_a_wallet_lock(tls_redis):
    port, ca = tls_redis
    client = connect_redis(Settings(redis_url=f"rediss://127.0.0.1:{port}/0", redis_auth=AUTH, redis_ca_cert=ca))
    with locks(Settings(redis_url=f"rediss://127.0.0.1:{port}/0", redis_auth=AUTH, redis_ca_cert=ca)).wallet(4242):
        assert client.exists("ledger:lock:wallet:4242") == 1
    assert client.exists("ledger:lock:wallet:4242") == 0


@pytest.mark.parametrize("auth", ["", "a-wrong-auth-string"])
def test_without_the_right_auth_string_the_lock_is_a_dependency_down(tls_redis, auth):
    port, ca = tls_redis
    settings = Settings(redis_url=f"rediss://127.0.0.1:{port}/0", redis_auth=auth, redis_ca_cert=ca)
    with pytest.raises(DependencyUnavailable) as down:
        with locks(settings).wallet(4243):
            pass
    assert down.value.status == 503 and down.value.details == {"service": "redis"}


def test_a_server_another_ca_signed_is_a_dependency_down(tls_redis):
    port, _ = tls_redis
    _, other = a_ca("someone else's CA")
    settings = Settings(redis_url=f"rediss://127.0.0.1:{port}/0", redis_auth=AUTH, redis_ca_cert=pem(other))
    with pytest.raises(DependencyUnavailable) as down:
        with locks(settings).wallet(4244):
            pass
    assert down.value.status == 503


def test_plain_redis_without_tls_is_refused_by_the_tls_only_server(tls_redis):
    port, _ = tls_redis
    with pytest.raises(DependencyUnavailable):
        with locks(Settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_auth=AUTH)).wallet(4245):
            pass
