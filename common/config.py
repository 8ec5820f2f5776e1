"""Settings, read from the environment in one place.

Defaults point at the local stack (`make dev`), so a developer and the tests need no
setup. In Google Cloud, LEDGER_DB_INSTANCE switches Postgres to the Cloud SQL Python
Connector with IAM database authentication, and LEDGER_REDIS_URL points at Memorystore.
"""

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", frozen=True)

    db_host: str = "127.0.0.1"
    db_port: int = 54300
    db_name: str = "ledger"
    db_user: str = "ledger_fn"
    db_password: str = "ledger_fn"
    db_instance: str = ""  # Cloud SQL "project:region:instance"; empty means a direct TCP connection
    db_iam_auth: bool = True
    db_pool_size: int = 8
    db_connect_timeout_s: float = 3.0
    db_statement_timeout_ms: int = 5000
    db_conn_max_age_s: float = 300.0
    posting_attempts: int = 5

    redis_url: str = "redis://127.0.0.1:54301/0"
    redis_timeout_s: float = 2.0
    lock_ttl_ms: int = 5000
    lock_wait_ms: int = 10000

    gcp_project: str = "demo-wallet-ledger"
    firestore_database: str = "(default)"
    firestore_timeout_s: float = 3.0
    idempotency_collection: str = "idempotency_keys"
    idempotency_ttl_s: int = 86400
    idempotency_wait_s: float = 10.0
    idempotency_lease_s: float = 30.0

    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
