"""How `python -m db` reaches the database: in Google Cloud (LEDGER_DB_INSTANCE set)
through the Cloud SQL connector as the migrator's IAM user, with IAM auth and no
password; elsewhere through the URL given."""

import pytest

from common.config import Settings
from db import connect


class RecordingConnector:
    made = []

    def __init__(self, **options):
        self.options = options
        RecordingConnector.made.append(self)

    def connect(self, instance, driver, **kwargs):
        self.call = (instance, driver, kwargs)
        return "a pg8000 connection"


@pytest.fixture
def connector(monkeypatch):
    import google.cloud.sql.connector

    RecordingConnector.made = []
    monkeypatch.setattr(google.cloud.sql.connector, "Connector", RecordingConnector)
    return RecordingConnector


def test_in_google_cloud_the_connector_logs_in_as_the_iam_user(connector):
    settings = Settings(db_instance="p:r:wallet-ledger-pg", db_user="ledger-migrator@p.iam", db_iam_auth=True)
    url, creator = connect.target(None, None, settings)
    assert url.drivername == "postgresql+pg8000" and url.password is None
    assert creator() == "a pg8000 connection"
    instance, driver, kwargs = connector.made[0].call
    assert (instance, driver) == ("p:r:wallet-ledger-pg", "pg8000")
    assert kwargs["user"] == "ledger-migrator@p.iam" and kwargs["enable_iam_auth"] is True
    assert kwargs["ip_type"] == "private" and "password" not in kwargs
    # no statement timeout for a migration, unlike a function's connection
    assert kwargs["startup_params"] == {}


def test_elsewhere_the_url_with_the_password_from_the_environment(connector):
    url, creator = connect.target("postgresql+pg8000://owner@127.0.0.1:5432/ledger", "s3cret", Settings())
    assert creator is None and url.password == "s3cret" and url.username == "owner"
    assert connector.made == []


def test_without_either_it_says_what_to_set():
    with pytest.raises(ValueError, match="LEDGER_DB_INSTANCE"):
        connect.target(None, None, Settings())
