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


@pytest.mark.parametrize(("mode", "context"), [("disable", False), ("prefer", None), ("require", True)])
def test_sslmode_maps_to_the_drivers_tls_setting(mode, context):
    from common.bootstrap import _direct_ssl

    assert _direct_ssl(mode) is context


def test_an_unknown_sslmode_is_refused():
    from common.bootstrap import _direct_ssl

    with pytest.raises(ValueError, match="LEDGER_DB_SSLMODE"):
        _direct_ssl("verify-full")
