"""The composition root: every client is built here, once per instance, on first use.

Nothing connects at import time, and heavy libraries (Firestore, Redis, Pub/Sub, the
Cloud SQL connector) are imported only by the first request that needs them, so a read
never pays for Firestore and a function that never takes a lock never pays for Redis.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from common.config import Settings, get_settings

T = TypeVar("T")


def once(build: Callable[[], T]) -> Callable[[], T]:
    """Thread-safe lazy singleton: concurrent first callers build it only once. Each has
    its own lock, so a request never waits behind another client's slow build (the
    event relay loading Pub/Sub in the background, say)."""
    built: list[T] = []
    build_lock = threading.RLock()

    @wraps(build)
    def get() -> T:
        if not built:
            with build_lock:
                if not built:
                    built.append(build())
        return built[0]

    get.reset = built.clear  # type: ignore[attr-defined]  # for tests that restart a dependency
    return get


@once
def cloud_sql_connector() -> Any:
    from google.cloud.sql.connector import Connector

    # lazy refresh: serverless instances get no CPU between requests for a background refresh;
    # its timeout (whole seconds) is its default for what it passes on to pg8000
    return Connector(refresh_strategy="lazy", timeout=math.ceil(get_settings().db_connect_timeout_s))


def connect_postgres(settings: Settings | None = None, connector: Any = None) -> Any:
    """One connection, bounded in time on both paths (common/adapters/postgres_connect.py)."""
    from common.adapters import postgres_connect as pc

    settings = settings or get_settings()
    startup = {"statement_timeout": str(settings.db_statement_timeout_ms), "search_path": "ledger"}
    per_operation_s = pc.per_operation_timeout_s(settings.db_connect_timeout_s, settings.db_statement_timeout_ms)
    if settings.db_instance:
        kwargs = pc.connector_kwargs(
            settings.db_user, settings.db_name, settings.db_iam_auth, startup, settings.db_connect_timeout_s
        )
        instance, through = settings.db_instance, connector or cloud_sql_connector()
        connection = pc.connect_within(
            lambda: through.connect(instance, "pg8000", **kwargs), settings.db_connect_timeout_s
        )
        return pc.bound_socket(connection, per_operation_s)
    import pg8000.native

    return pg8000.native.Connection(
        settings.db_user,
        host=settings.db_host,
        port=settings.db_port,
        database=settings.db_name,
        password=settings.db_password,
        timeout=per_operation_s,
        application_name="wallet-ledger",
        startup_params=startup,
        ssl_context=pc.tls_context(settings.db_sslmode, settings.db_sslrootcert),
    )


@once
def pool() -> Any:
    from common.adapters.postgres import Pool

    settings = get_settings()
    return Pool(connect_postgres, size=settings.db_pool_size, max_age_s=settings.db_conn_max_age_s)


@once
def ledger() -> Any:
    from common.adapters.ledger_store import PostgresLedger

    settings = get_settings()
    return PostgresLedger(
        pool(),
        attempts=settings.posting_attempts,
        group_commit_max=settings.group_commit_max,
        group_commit_in_flight=settings.group_commit_in_flight,
    )


@once
def ledger_admin() -> Any:
    from common.adapters.ledger_admin import LedgerAdmin

    settings = get_settings()
    return LedgerAdmin(pool(), attempts=settings.posting_attempts)


@once
def ledger_queries() -> Any:
    from common.adapters.ledger_queries import LedgerQueries

    return LedgerQueries(pool(), attempts=get_settings().posting_attempts)


def connect_redis(settings: Settings | None = None) -> Any:
    """A Redis client (a pool; it connects on first command). Memorystore's: rediss://,
    the server's certificate required and verified against the instance's own CA
    (redis_ca_cert, PEM text), and AUTH (redis_auth). The local stack's: plain redis://.
    A wrong AUTH string or a server that fails verification raises a ConnectionError,
    which the adapters turn into DependencyUnavailable, as for a Redis that is down.

    With that CA, the hostname is not checked: Memorystore's certificate names the
    instance's IP as its CN, with no subject alternative name, and Python matches an IP
    host only against IP SANs, so redis-py's default check refuses every Memorystore
    (envoyproxy/ratelimit PR #409). The CA is the identity check instead: it is made for
    this one instance and signs only its certificate."""
    import redis

    settings = settings or get_settings()
    options: dict[str, Any] = {}
    if settings.redis_auth:
        options["password"] = settings.redis_auth
    if settings.redis_ca_cert:
        options.update(ssl_ca_data=settings.redis_ca_cert, ssl_cert_reqs="required", ssl_check_hostname=False)
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        **options,
    )


@once
def redis_client() -> Any:
    return connect_redis()


@once
def locks() -> Any:
    from common.adapters.redis_locks import RedisLocks

    settings = get_settings()
    return RedisLocks(
        redis_client(),
        ttl_ms=settings.lock_ttl_ms,
        wait_ms=settings.lock_wait_ms,
        max_waiters=settings.lock_max_waiters,
    )


@once
def rate_limiter() -> Any:
    """The locks' Redis client; with limits off, a limiter that imports no Redis."""
    if not get_settings().rate_limit_enabled:
        from common.rate_limits import NoLimiter

        return NoLimiter()
    from common.adapters.redis_rate_limits import RedisRateLimiter

    return RedisRateLimiter(redis_client())


@once
def rate_limit_defaults() -> Any:
    from common.rate_limits import defaults_from

    return defaults_from(get_settings())


@once
def firestore_client() -> Any:
    """google-cloud-firestore's client (FIRESTORE_EMULATOR_HOST points it at the emulator)."""
    from google.cloud import firestore

    settings = get_settings()
    return firestore.Client(project=settings.gcp_project, database=settings.firestore_database)


@once
def idempotency() -> Any:
    from common.adapters.firestore_idempotency import FirestoreRecordStore
    from common.idempotency import Idempotency

    settings = get_settings()
    return Idempotency(
        FirestoreRecordStore(firestore_client(), settings.idempotency_collection, settings.firestore_timeout_s),
        ttl_s=settings.idempotency_ttl_s,
        wait_s=settings.idempotency_wait_s,
        lease_s=settings.idempotency_lease_s,
    )


@once
def publisher_client() -> Any:
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry, if_exception_type
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]
    from google.cloud.pubsub_v1.types import BatchSettings, LimitExceededBehavior, PublisherOptions, PublishFlowControl

    timeout_s = get_settings().events_publish_timeout_s
    return pubsub_v1.PublisherClient(
        # a short batching window: events of concurrent requests share a round trip
        batch_settings=BatchSettings(max_messages=100, max_latency=0.005),
        publisher_options=PublisherOptions(
            enable_message_ordering=True,
            # Retries stop with the relay's own wait (the library's default goes on for
            # minutes): an event not confirmed by then stays pending for the next round,
            # instead of piling up copies in memory while Pub/Sub is down.
            retry=Retry(
                initial=0.1,
                maximum=1.0,
                multiplier=2.0,
                timeout=timeout_s,
                predicate=if_exception_type(
                    gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted, gexc.InternalServerError, gexc.Unknown
                ),
            ),
            timeout=timeout_s,
            flow_control=PublishFlowControl(
                message_limit=10_000, byte_limit=64 * 1024 * 1024, limit_exceeded_behavior=LimitExceededBehavior.ERROR
            ),
        ),
    )


@once
def publisher() -> Any:
    from common.adapters.pubsub_events import PubSubPublisher

    settings = get_settings()
    client = publisher_client()
    topic = client.topic_path(settings.gcp_project, settings.events_topic)
    return PubSubPublisher(client, topic, settings.events_publish_timeout_s)


@once
def outbox() -> Any:
    from common.adapters.outbox import PostgresOutbox

    return PostgresOutbox(pool(), attempts=get_settings().posting_attempts)


@once
def relay() -> Any:
    """The sweeper's relay (the outbox_sweeper function, make ops sweep)."""
    from common.relay import Relay

    return Relay(outbox(), publisher)


@once
def after_commit() -> Any:
    """The relay right after a posting commits, with the marks a posting role may make."""
    from common.adapters.outbox import AfterCommitOutbox
    from common.relay import AfterCommit, Relay

    settings = get_settings()
    outbox = AfterCommitOutbox(pool(), attempts=settings.posting_attempts)
    return AfterCommit(Relay(outbox, publisher), settings.events_batch, settings.events_linger_ms / 1000)


@once
def access_store() -> Any:
    from common.adapters.access_store import AccessStore

    return AccessStore(pool(), attempts=get_settings().posting_attempts)


@once
def trusted_issuers() -> Any:
    """Read and checked when a function starts (common/http.py): a malformed setting, or
    the local issuer trusted in Google Cloud, stops the instance there."""
    from common.auth.tokens import parse_issuers, refuse_local_issuers_in_cloud

    issuers = parse_issuers(get_settings().auth_issuers)
    refuse_local_issuers_in_cloud(issuers)
    return issuers


def warm_up(money: bool) -> None:
    """Build what an HTTP function's first request would: the caller's verifier, the rate
    limiter and the service, and for a money action the idempotency store and the event
    relay's Pub/Sub client. Each client is built, not connected (Firestore's and
    Pub/Sub's channels, the Redis pool, the Postgres pool all connect on first use), so
    a minimum instance started ahead of traffic has paid its imports before its first
    caller comes (Settings.warm_up_on_start; measured by bench/cold_start.py --idle).

    A warm-up that fails (the metadata server slow to give credentials, say) is logged
    and left to the first request, which builds what is missing and answers 503 if it
    still can't: a hiccup at start must not become a crash loop."""
    import logging

    try:
        authenticator()
        rate_limiter()
        service()
        if money:
            idempotency()
            publisher_client()
    except Exception:  # noqa: BLE001 - anything left unbuilt is built on first use
        logging.getLogger("ledger.warm_up").warning(
            "warm-up on start failed; clients are built on first use", exc_info=True
        )


@once
def cursors() -> Any:
    """The paging cursors' signer. Required in Google Cloud: a key of one instance's own
    would refuse the next page whenever another instance served it. Checked when the
    wallets function starts."""
    import logging
    import secrets

    from common.auth.tokens import in_google_cloud
    from common.cursors import Cursors

    key = get_settings().cursor_key
    if not key:
        if in_google_cloud():
            raise RuntimeError("refusing to start: LEDGER_CURSOR_KEY is not set (a cursor must page on any instance)")
        logging.getLogger("ledger.cursors").info(
            "LEDGER_CURSOR_KEY is not set: cursors are signed with a key of this process alone"
        )
        return Cursors(secrets.token_bytes(32))
    return Cursors(key.encode())


@once
def authenticator() -> Any:
    from common.auth.authenticate import Authenticator
    from common.auth.tokens import TokenVerifier

    settings = get_settings()
    verifier = TokenVerifier(trusted_issuers(), settings.auth_clock_skew_s, settings.auth_certs_timeout_s)
    return Authenticator(verifier, access_store().principal, settings.auth_principal_ttl_s)


@once
def access_admin() -> Any:
    from common.adapters.access_admin import AccessAdmin

    return AccessAdmin(pool(), attempts=get_settings().posting_attempts)


@once
def access_service() -> Any:
    """The operators' API (functions/access): principals, grants, roles, dual control."""
    from common.access_service import AccessService

    return AccessService(access_admin())


@once
def service() -> Any:
    from common.service import LedgerService

    return LedgerService(
        ledger(),
        ledger_admin(),
        ledger_queries(),
        idempotency,
        locks,
        lambda transaction_id: after_commit().submit(transaction_id),
        access=access_store(),
        transfers_to_anyone=get_settings().transfers_to_anyone,
        cursors=cursors,
        rules=rule_store(),
    )


def rule_store() -> Any:
    from common.adapters.rule_store import RuleStore

    return RuleStore(pool(), attempts=get_settings().posting_attempts)


@once
def chain_store() -> Any:
    """The hash chain's links and the rows they cover (common/hash_chain.py)."""
    from common.adapters.chain_store import ChainStore
    from common.adapters.postgres import run_with_retry

    connections = pool()
    return ChainStore(lambda sql, **params: run_with_retry(connections, lambda con: con.run(sql, **params)))


@once
def checkpoint_store() -> Any:
    """The system accounts' balance checkpoints (common/balance_checkpoints.py)."""
    from common.adapters.checkpoint_store import PostgresCheckpoints
    from common.adapters.postgres import run_with_retry

    connections = pool()
    return PostgresCheckpoints(lambda sql, **params: run_with_retry(connections, lambda con: con.run(sql, **params)))


# Balance actions as messages (functions/actions) --------------------------------------


@once
def message_publisher() -> Any:
    """Results, dead letters and replays: the events' client, one wait per message."""
    from common.adapters.pubsub_messages import MessagePublisher

    settings = get_settings()
    return MessagePublisher(publisher_client(), settings.gcp_project, settings.events_publish_timeout_s)


@once
def action_failures() -> Any:
    from common.adapters.firestore_failures import FailureLog

    settings = get_settings()
    return FailureLog(firestore_client(), settings.action_failures_collection, settings.firestore_timeout_s)


@once
def message_actions() -> Any:
    from common.auth.authenticate import CachedPrincipals
    from common.message_actions import MessageActions

    settings = get_settings()
    return MessageActions(
        service,
        # a topic's grants are cached as a token's principal's are (auth_principal_ttl_s)
        CachedPrincipals(access_store().principal, settings.auth_principal_ttl_s),
        message_publisher,
        action_failures,
        results_topic=settings.action_results_topic,
        dead_letter_topic=settings.actions_dead_letter_topic,
        batch_max=settings.usage_batch_max,
    )


# The ERP export -------------------------------------------------------------------


@once
def erp_store() -> Any:
    from common.adapters.erp_store import ErpStore

    return ErpStore(pool())


@once
def erp_client() -> Any:
    from common.adapters.erp_http import ErpClient

    settings = get_settings()
    return ErpClient(settings.erp_url, settings.erp_token, settings.erp_timeout_s)


@once
def chart() -> Any:
    from common.erp.chart import DEFAULT_PATH, load_chart

    chart = load_chart(get_settings().erp_chart_path or DEFAULT_PATH)
    return chart.excluding_migrations() if get_settings().erp_exclude_migrations else chart


@once
def erp_export() -> Any:
    from common.erp_export import ErpExport

    settings = get_settings()
    return ErpExport(
        erp_store(),
        erp_client,
        chart(),
        stream=settings.erp_stream,
        batch_events=settings.erp_batch_events,
        park_after=settings.erp_park_after,
        retry_base_s=settings.erp_retry_base_s,
        retry_max_s=settings.erp_retry_max_s,
        budget_s=settings.erp_pass_budget_s,
        pacer=lambda: pacer(min_rate=settings.erp_min_rate),
    )


# Background jobs' pacing (common/pacing.py) ------------------------------------


@once
def load_signal() -> Any:
    from common.adapters.load_signal import LoadSignal

    return LoadSignal(pool(), attempts=1)  # a reading that failed is answered by resting


def pacer(min_rate: float = 0.0) -> Any:
    """A new pacer for one run of a background job: its counters are that run's; it
    keeps `min_rate` items a second if the job counts them (common/pacing.py)."""
    from common.pacing import Pacer

    settings = get_settings().pacing(min_rate)

    def signal() -> Any:
        return load_signal()()  # the reader is built on the first reading

    return Pacer(settings, signal=signal if settings.mode == "adaptive" else None)


# Automatic actions (functions/automation) -------------------------------------


@once
def automation_store() -> Any:
    from common.adapters.automation_store import AutomationStore

    return AutomationStore(pool(), attempts=get_settings().posting_attempts)


@once
def payment_provider() -> Any:
    from common.adapters.payments_http import HttpPaymentProvider

    settings = get_settings()
    return HttpPaymentProvider(
        settings.payment_provider_url, settings.payment_provider_token, settings.payment_timeout_s
    )


@once
def notices() -> Any:
    from common.adapters.pubsub_notices import PubSubNotices

    settings = get_settings()
    client = publisher_client()
    topic = client.topic_path(settings.gcp_project, settings.notifications_topic)
    return PubSubNotices(client, topic, settings.events_publish_timeout_s)


@once
def automation_engine() -> Any:
    from common.automation_engine import AutomationEngine

    return AutomationEngine(automation_store(), service(), payment_provider, notices)
