"""Settings come from LEDGER_* variables, converted to each field's type."""

import pytest

from common.config import Settings


def test_defaults_point_at_the_local_stack():
    settings = Settings.from_env({})
    assert (settings.db_host, settings.db_port, settings.db_iam_auth) == ("127.0.0.1", 54300, True)


def test_no_database_password_is_baked_in():
    """In Google Cloud there is none (IAM database authentication); the local stack draws
    its own and passes it by environment (emulators/logins.py)."""
    settings = Settings.from_env({})
    assert settings.db_password == "" and settings.db_user == ""


def test_variables_are_converted_to_the_field_types():
    settings = Settings.from_env(
        {"LEDGER_DB_PORT": "6543", "LEDGER_DB_IAM_AUTH": "false", "LEDGER_IDEMPOTENCY_WAIT_S": "2.5", "OTHER": "x"}
    )
    assert settings.db_port == 6543
    assert settings.db_iam_auth is False
    assert settings.idempotency_wait_s == 2.5


@pytest.mark.parametrize(
    ("name", "value"), [("LEDGER_DB_PORT", "5432.0"), ("LEDGER_DB_IAM_AUTH", "maybe"), ("LEDGER_LOCK_TTL_MS", "")]
)
def test_a_value_that_does_not_convert_is_named_in_the_error(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("mode", ["prefer", "require", "allow", "verify-ca", ""])
def test_a_mode_that_does_not_check_the_server_is_refused_when_settings_load(mode):
    with pytest.raises(ValueError, match="LEDGER_DB_SSLMODE"):
        Settings.from_env({"LEDGER_DB_SSLMODE": mode})


def test_direct_connections_verify_the_server_by_default():
    assert Settings.from_env({}).db_sslmode == "verify-full"


@pytest.mark.parametrize("host", ["10.0.0.3", "db.internal", "127.0.0.1.nip.io"])
def test_no_tls_is_refused_towards_a_host_off_this_machine(host):
    with pytest.raises(ValueError, match="only a loopback host"):
        Settings.from_env({"LEDGER_DB_SSLMODE": "disable", "LEDGER_DB_HOST": host})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_no_tls_is_allowed_on_loopback(host):
    assert Settings.from_env({"LEDGER_DB_SSLMODE": "disable", "LEDGER_DB_HOST": host}).db_sslmode == "disable"


def test_the_connector_path_ignores_the_direct_tls_mode():
    """The connector makes its own TLS (the instance's CA, IAM): the direct host is unused."""
    env = {"LEDGER_DB_SSLMODE": "disable", "LEDGER_DB_HOST": "10.0.0.3", "LEDGER_DB_INSTANCE": "p:r:i"}
    assert Settings.from_env(env).db_instance == "p:r:i"


IN_CLOUD = {"K_SERVICE": "topup", "LEDGER_DB_INSTANCE": "p:r:i", "LEDGER_DB_USER": "ledger-poster@p.iam"}


def test_in_google_cloud_a_function_logs_in_with_iam_alone():
    settings = Settings.from_env(IN_CLOUD)
    assert settings.db_iam_auth is True and settings.db_password == ""


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"LEDGER_DB_PASSWORD": "hunter2"}, "LEDGER_DB_PASSWORD"),
        ({"LEDGER_DB_IAM_AUTH": "false"}, "LEDGER_DB_IAM_AUTH"),
        ({"LEDGER_DB_IAM_AUTH": "false", "LEDGER_DB_PASSWORD": "hunter2"}, "LEDGER_DB_PASSWORD"),
    ],
)
def test_in_google_cloud_a_password_or_iam_auth_off_refuses_to_start(extra, named):
    with pytest.raises(ValueError, match=named) as refusal:
        Settings.from_env({**IN_CLOUD, **extra})
    assert "hunter2" not in str(refusal.value)


def test_off_google_cloud_the_local_stack_logs_in_with_its_password():
    env = {"LEDGER_DB_IAM_AUTH": "false", "LEDGER_DB_PASSWORD": "drawn-by-the-stack"}
    assert Settings.from_env(env).db_password == "drawn-by-the-stack"


def test_a_redis_ca_without_a_tls_url_is_refused_before_anything_connects():
    with pytest.raises(ValueError, match="REDIS_CA_CERT"):
        Settings.from_env(
            {"LEDGER_REDIS_CA_CERT": "-----BEGIN CERTIFICATE-----", "LEDGER_REDIS_URL": "redis://10.0.0.3:6378/0"}
        )
    settings = Settings.from_env({"LEDGER_REDIS_CA_CERT": "pem", "LEDGER_REDIS_URL": "rediss://10.0.0.3:6378/0"})
    assert settings.redis_ca_cert == "pem"


@pytest.mark.parametrize("url", ["redis://10.0.0.3:6379/0", "redis://redis.internal:6379/0"])
def test_an_auth_string_over_plain_redis_to_a_network_host_is_refused(url):
    with pytest.raises(ValueError, match="REDIS_AUTH"):
        Settings.from_env({"LEDGER_REDIS_AUTH": "an-auth-string", "LEDGER_REDIS_URL": url})


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:54301/0", "redis://localhost:6379/0", "redis://[::1]:6379/0", "rediss://10.0.0.3:6378/0"]
)
def test_an_auth_string_goes_over_tls_or_to_loopback(url):
    assert Settings.from_env({"LEDGER_REDIS_AUTH": "an-auth-string", "LEDGER_REDIS_URL": url}).redis_auth
