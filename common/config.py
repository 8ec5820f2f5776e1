"""Settings, read from the environment in one place.

Defaults point at the local stack (`make dev`), so a developer and the tests need no
setup. In Google Cloud, LEDGER_DB_INSTANCE switches Postgres to the Cloud SQL Python
Connector with IAM database authentication, and LEDGER_REDIS_URL points at Memorystore.

A plain dataclass rather than pydantic-settings: every function reads its settings on
its first request, and pydantic-settings' import alone was a sizeable part of each cold
start (the figure: bench/results/notes.md). Each `LEDGER_<FIELD>` variable is converted
to the field's type; a value that does not convert stops the instance with a message
naming it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.pacing import PacingSettings

PREFIX = "LEDGER_"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True)
class Settings:
    db_host: str = "127.0.0.1"
    db_port: int = 54300
    db_name: str = "ledger"
    # The function's own login (its kind's role: infra/functions.py DATABASE_LOGINS). No
    # default password: in Google Cloud there is none (IAM database authentication), and
    # the local stack draws its own (emulators/logins.py) and passes them by environment.
    db_user: str = ""
    db_password: str = ""
    db_instance: str = ""  # Cloud SQL "project:region:instance"; empty means a direct TCP connection
    db_iam_auth: bool = True
    # Direct connections only (the connector makes its own TLS): verify-full checks the
    # server's certificate and name (CA: db_sslrootcert, else the system's store);
    # disable is allowed towards a loopback host alone (common/adapters/postgres_connect.py).
    db_sslmode: str = "verify-full"
    db_sslrootcert: str = ""
    db_pool_size: int = 8
    db_connect_timeout_s: float = 3.0
    db_statement_timeout_ms: int = 5000
    db_conn_max_age_s: float = 300.0
    # python -m common.reconcile reads the whole ledger: its own bound, far above a request's
    reconcile_statement_timeout_ms: int = 600_000
    posting_attempts: int = 5
    # Group commit (common/group_commit.py): postings that arrive while this many calls
    # are at the database wait and go together, up to group_commit_max per call.
    # group_commit_max = 1 posts every request alone.
    group_commit_max: int = 16
    group_commit_in_flight: int = 1

    redis_url: str = "redis://127.0.0.1:54301/0"
    # Memorystore, with AUTH and in-transit encryption: redis_url is rediss://, redis_auth
    # the AUTH string and redis_ca_cert the instance's server CA (PEM text), both from
    # Secret Manager / the instance. Empty: the local stack's plain, password-less Redis.
    redis_auth: str = ""
    redis_ca_cert: str = ""
    redis_timeout_s: float = 2.0
    lock_ttl_ms: int = 5000
    # A usage that cannot have its wallet's lock within lock_wait_ms, or that finds
    # lock_max_waiters usages already waiting for it, answers 409 wallet_locked: a
    # wallet's usages go one at a time, so a longer queue only adds latency (and Redis
    # calls) before the same answer. Waiters poll with jittered exponential backoff.
    lock_wait_ms: int = 2000
    lock_max_waiters: int = 16

    # Rate limits per principal and action class (common/rate_limits.py, docs/rate-limits.md).
    # These defaults are for a caller whose roles and own row name no limit: an end
    # user's app, a script, a person. None of them has a reason to exceed them, while a
    # runaway caller held to them takes a small share of what the ledger sustains
    # (bench/results/latest.md). Services that post in bulk (payment_service,
    # metering_service) get their own limits in ledger.roles, not higher defaults.
    # Money is the scarcest (each request is a Postgres commit and a Firestore write);
    # reads page through history, so more; admin changes are made by hand, so fewer.
    # The bursts (2x) absorb a client's retry or a page load's fan-out.
    rate_limit_enabled: bool = True
    # Build an HTTP function's clients when its instance starts, not on its first request
    # (common/bootstrap.py warm_up): on for a warm minimum instance, where no caller waits
    # for the start; off on the local stack, whose cold start it would only move.
    warm_up_on_start: bool = False
    rate_limit_money_per_s: float = 20.0
    rate_limit_money_burst: int = 40
    rate_limit_read_per_s: float = 50.0
    rate_limit_read_burst: int = 100
    rate_limit_admin_per_s: float = 5.0
    rate_limit_admin_burst: int = 10

    gcp_project: str = "demo-wallet-ledger"
    firestore_database: str = "(default)"
    firestore_timeout_s: float = 3.0
    idempotency_collection: str = "idempotency_keys"
    idempotency_ttl_s: int = 86400
    idempotency_wait_s: float = 10.0
    idempotency_lease_s: float = 30.0

    # Ledger events: every Pub/Sub name lives here, for the functions, the local stack
    # and the deployment alike.
    events_topic: str = "ledger-events"
    events_publish_timeout_s: float = 5.0
    events_batch: int = 200  # events the after-commit relay publishes per round
    events_linger_ms: int = 25  # the relay's wait before a round, gathering more events

    # The ERP export (common/erp_export.py). Cloud Scheduler publishes a tick to each
    # *_tick_topic on its schedule; the functions of the same name consume them.
    erp_stream: str = "erp"  # the export stream (erp.cursors) this deployment feeds
    erp_url: str = ""  # the ERP's HTTP endpoint; batches go to {erp_url}/batches
    erp_token: str = ""  # in Google Cloud, a Secret Manager secret exposed as this variable
    erp_timeout_s: float = 30.0
    erp_chart_path: str = ""  # empty: common/erp/chart.toml
    erp_batch_events: int = 1000  # ledger transactions per ERP batch
    erp_park_after: int = 5  # failed deliveries before a batch is parked for an operator
    erp_retry_base_s: float = 60.0  # backoff after the first failure, doubling up to erp_retry_max_s
    erp_retry_max_s: float = 3600.0
    # One export pass starts no batch after this: with its last batch, that batch's
    # delivery (up to erp_timeout_s) and a rest (up to 5 s) it ends before the next tick,
    # 300 s on; paced, a backlog clears over passes back to back (docs/background-jobs.md).
    erp_pass_budget_s: float = 240.0
    # Events a second a paced export pass keeps while it has a backlog, however busy the
    # database: it rests only while ahead of this (common/pacing.py, min_rate). 2,000/s
    # clears 1,000,000 events in under 11 minutes of passes (the goal is 15)
    # where the unpaced export manages about 4,500/s beside live traffic; 0 leaves the
    # export to the duty alone.
    erp_min_rate: float = 2000.0
    # Migrations' postings (opening_balance, migration_transfer and their voids) give no
    # journal lines: the export passes them (its cursor moves on) and the ERP books the
    # migrated balances its own way (docs/events-and-erp.md, "Migrations").
    erp_exclude_migrations: bool = False
    erp_export_tick_topic: str = "erp-export-tick"
    erp_export_schedule: str = "*/5 * * * *"
    erp_reconcile_tick_topic: str = "erp-reconcile-tick"
    erp_reconcile_schedule: str = "37 2 * * *"  # off the export's 5-minute marks
    outbox_sweep_tick_topic: str = "outbox-sweep-tick"
    outbox_sweep_schedule: str = "* * * * *"
    outbox_stuck_after_s: float = 300.0  # an unpublished event older than this is reported as stuck
    outbox_sweep_min_age_s: float = 10.0  # the sweep leaves younger events to the after-commit relay
    # The hash chain, extended by the sweeper's tick after its sweep: batches go on until
    # caught up or this much of the tick has passed (the tick ends within a minute); a
    # next transaction to link older than chain_lag_alert_s is logged as an error.
    chain_extend_budget_s: float = 40.0
    chain_lag_alert_s: float = 300.0
    # Pacing of every background job (common/pacing.py, docs/background-jobs.md): busy at
    # most job_duty_cap of each second, down to job_duty_floor while the database shows
    # live load (more than job_busy_sessions sessions in a transaction, or a lock wait).
    # job_pacing: adaptive, fixed (always the cap) or off (never rests).
    job_pacing: str = "adaptive"
    job_duty_cap: float = 0.25
    job_duty_floor: float = 0.05
    job_busy_sessions: int = 4
    # A lot expiry run (every 5 minutes) or a dormancy run (daily) stops after this
    # long, paced; the next run goes on (docs/background-jobs.md).
    lot_expiry_budget_s: float = 240.0
    dormancy_budget_s: float = 480.0  # inside the ticked function's 540 s timeout
    lot_expiry_tick_topic: str = "lot-expiry-tick"
    lot_expiry_schedule: str = "*/5 * * * *"
    dormancy_tick_topic: str = "dormancy-tick"  # dormant processing (docs/dormancy.md)
    dormancy_schedule: str = "15 3 * * *"
    # The daily incremental reconciliation (functions/ledger_reconcile): one run of
    # `python -m common.reconcile`, all of it within the budget (the function's own
    # timeout is 540 s), or rolled back and retried by Pub/Sub.
    ledger_reconcile_tick_topic: str = "ledger-reconcile-tick"
    ledger_reconcile_schedule: str = "0 3 * * *"
    ledger_reconcile_budget_s: float = 480.0

    # Balance actions as Pub/Sub messages (functions/actions, docs/messages.md). Each of
    # action_topics (comma-separated) is one publishing service's own topic and a
    # principal of the ledger (issuer "pubsub", subject the topic's full name), pushed to
    # the actions function. Every outcome goes to action_results_topic; a message that
    # failed action_max_deliveries times (or is malformed) to the dead letters.
    action_topics: str = "balance-actions,metering-usage"
    action_results_topic: str = "balance-action-results"
    actions_dead_letter_topic: str = "balance-actions-dead-letter"
    action_max_deliveries: int = 5
    usage_batch_max: int = 1000  # usage records in one bulk message
    action_failures_collection: str = "action_failures"  # why a message is being retried (Firestore)

    # Event-driven automatic actions (functions/automation, docs/automation.md): pushed
    # every ledger event and a Cloud Scheduler tick; low-balance notices go to
    # notifications_topic; charges for auto top-ups to the payment provider.
    automation_tick_topic: str = "automation-tick"
    automation_schedule: str = "* * * * *"
    automation_dead_letter_topic: str = "automation-dead-letter"
    # Automation's own topic, pushed to it alone: a dead-lettered ledger event replayed
    # here (python -m common.dead_letters --function automation replay) reaches no other
    # subscriber of the events topic.
    automation_replay_topic: str = "automation-replay"
    notifications_topic: str = "ledger-notifications"
    payment_provider_url: str = ""
    payment_provider_token: str = ""  # in Google Cloud, a Secret Manager secret exposed as this variable
    payment_timeout_s: float = 10.0

    # Callers (common/auth/): the trusted token issuers, a JSON list of
    # {"issuer", "certs_url", "audiences"}. Empty trusts nothing: every call is a 401.
    auth_issuers: str = ""
    auth_clock_skew_s: int = 30
    auth_certs_timeout_s: float = 5.0
    auth_principal_ttl_s: float = 30.0  # how long a principal's grants are cached per instance
    # Whether a caller may transfer from its wallets to a wallet outside its boundary
    # (payments between customers). Off: both ends inside one grant's boundary, and no
    # payee can be probed (docs/callers-and-tenants.md).
    transfers_to_anyone: bool = False
    # The HMAC key that signs paging cursors (common/cursors.py), at least 32 bytes, the
    # same on every instance so a cursor works on whichever one serves the next page. In
    # Google Cloud a Secret Manager secret exposed as this variable, and required there;
    # empty elsewhere means a random key per process (docs/api.md, "Paging").
    cursor_key: str = ""

    # A Pub/Sub-delivered event published longer ago than this is not processed
    # (common/cloud_events.py): a scheduler tick is acknowledged with a warning, a
    # balance action or a ledger event for automation goes to its dead-letter topic.
    # Google's retries of a failing event go on for up to a day; so does this default,
    # which only ends a poison event's retries. The deployment sets it per function
    # (a tick's is about its schedule's period). 0: no limit.
    max_event_age_s: float = 86400.0

    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _check_sslmode(self.db_sslmode, self.db_host, direct=not self.db_instance)
        self.pacing()  # refuses a mode or duties that make no sense, at start
        if self.redis_ca_cert and not self.redis_url.startswith("rediss://"):
            # the CA would be ignored and the traffic, AUTH string included, sent in clear
            raise ValueError(f"{PREFIX}REDIS_CA_CERT is set but {PREFIX}REDIS_URL is not rediss:// (TLS)")
        if self.redis_auth and _redis_in_clear_over_a_network(self.redis_url):
            raise ValueError(
                f"{PREFIX}REDIS_AUTH is set but {PREFIX}REDIS_URL is a plain redis:// URL to a host that is not"
                " loopback: the AUTH string would cross the network in clear; use rediss:// (TLS)"
            )

    def pacing(self, min_rate: float = 0.0) -> PacingSettings:
        from common.pacing import PacingSettings

        return PacingSettings(
            mode=self.job_pacing,
            cap=self.job_duty_cap,
            floor=self.job_duty_floor,
            busy_sessions=self.job_busy_sessions,
            min_rate=min_rate,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _convert(field.name, field.type, raw.strip())
        settings = cls(**values)
        if in_google_cloud(environ):
            _check_iam_auth_only(settings)
        return settings


def in_google_cloud(environ: Mapping[str, str] = os.environ) -> bool:
    # Cloud Run and Cloud Functions set K_SERVICE on every instance; the local stack doesn't.
    return bool(environ.get("K_SERVICE"))


def _check_iam_auth_only(settings: Settings) -> None:
    """In Google Cloud a function logs in as its IAM database user and nothing else: a
    password would be a secret to leak and rotate, and a login IAM can't revoke. Only
    the migration job uses one (the admin user's: docs/database.md, "Passwords")."""
    if settings.db_password:
        raise ValueError(
            f"{PREFIX}DB_PASSWORD is set: in Google Cloud a function logs in as its IAM database user,"
            " without a password; unset it"
        )
    if not settings.db_iam_auth:
        raise ValueError(
            f"{PREFIX}DB_IAM_AUTH is off: in Google Cloud a function logs in only with IAM database"
            " authentication; unset it or set it to true"
        )


def _convert(name: str, kind: object, raw: str) -> object:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (bool, "bool"):
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw


SSL_MODES = ("disable", "verify-full")


def _check_sslmode(mode: str, host: str, direct: bool) -> None:
    """Refuse a mode that would not check the server, before anything connects."""
    if mode not in SSL_MODES:
        raise ValueError(
            f"{PREFIX}DB_SSLMODE={mode!r}: use verify-full (TLS, the server's certificate and name checked)"
            " or disable (loopback only); prefer and require do not check who answers"
        )
    if mode == "disable" and direct and not _is_loopback(host):
        raise ValueError(
            f"{PREFIX}DB_SSLMODE=disable would send the database's traffic in clear to {host!r}:"
            " only a loopback host may go without TLS; use verify-full"
        )


def _redis_in_clear_over_a_network(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme == "redis" and not _is_loopback(parts.hostname or "")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
