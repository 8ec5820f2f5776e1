"""The HTTP edge shared by every function: the caller verified, strict JSON parsing,
the one error table, and responses. Entry points call `endpoint` and stay a few
lines long; their handlers take the request and its verified `Caller`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import flask

from common import bootstrap, timing, tracing
from common.auth.callers import Caller
from common.config import get_settings
from common.errors import (
    InProgress,
    LedgerError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
)
from common.idempotency import Outcome, refuse_reserved_key
from common.rate_limits import Bucket, Decision, resolve, response_headers
from common.strict_json import MAX_JSON_DEPTH as MAX_JSON_DEPTH  # the edge's limit, as before
from common.strict_json import loads_object, validated

log = logging.getLogger("ledger.http")
if TYPE_CHECKING:  # pydantic loads with the first request that parses a body (cold starts)
    from pydantic import BaseModel
M = TypeVar("M", bound="BaseModel")
MAX_BODY_BYTES = 64 * 1024
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
REQUEST_ID_HEADER = "X-Request-Id"
REALM = "wallet-ledger"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/-]{1,128}")
Handler = Callable[[flask.Request, Caller], flask.Response]
# What a 500 can truly say: a money action that failed unexpectedly may have failed
# after its posting committed, so it never claims that nothing was posted.
UNEXPECTED = {
    "money": "unexpected error: the action may or may not have posted; retry with the same Idempotency-Key "
    "(it answers with the posting if there is one), or look the transaction up by that key",
    "admin": "unexpected error: the change may or may not have been made; read it back before retrying",
}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> flask.Response:
    return flask.Response(
        # Sorted keys: a body rendered in Python and the same one read back from Postgres
        # (a replay after a crash) are byte-for-byte equal.
        json.dumps(body, separators=(",", ":"), sort_keys=True),
        status=status,
        mimetype="application/json",
        headers=headers or {},
    )


def error_response(error: LedgerError) -> flask.Response:
    # a retry can succeed: another copy holds the key or the wallet, or a dependency is down
    # (not a 409 for a business id posted already: the same refusal again)
    headers = {"Retry-After": "1"} if isinstance(error, InProgress) or error.status == 503 else {}
    if isinstance(error, Unauthenticated):
        # RFC 6750: a request without a token learns the scheme; one with a bad token also
        # learns why (the message never repeats the token).
        challenge = f'Bearer realm="{REALM}"'
        if error.token_sent:
            challenge += f', error="invalid_token", error_description="{error.message}"'
        headers["WWW-Authenticate"] = challenge
    elif isinstance(error, RateLimited):
        headers.update(error.headers)
    if isinstance(error, MethodNotAllowed) and isinstance(error.details, dict):
        headers["Allow"] = ", ".join(error.details["allowed"])  # a 405 must name them (RFC 9110)
    return json_response(error.status, error.body(), headers)


def outcome_response(outcome: Outcome) -> flask.Response:
    headers = {REPLAYED_HEADER: "true"} if outcome.replayed else {}
    return json_response(outcome.status, outcome.body, headers)


def request_id(request: flask.Request) -> str:
    """The server's id for this request, new for every one: logged, kept with the
    request's writes and sent back as X-Request-Id. Never anything the caller sends: not
    its X-Request-Id, nor a trace id (Google lets a client force one), or a caller could
    name its writes with another request's id."""
    return uuid.uuid4().hex


def trace_id(request: flask.Request) -> str | None:
    """The request's trace id (traceparent, else X-Cloud-Trace-Context: common/tracing.py)."""
    trace = tracing.from_headers(request.headers)
    return trace.trace_id if trace else None


def client_request_id(request: flask.Request) -> str | None:
    """The caller's own X-Request-Id when it is a plain token: kept beside the server's
    (actor.client_request_id, the request log) so the caller can find its request."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.fullmatch(given) else None


def authenticate(request: flask.Request, request_id: str) -> Caller:
    return bootstrap.authenticator().caller(  # type: ignore[no-any-return]
        request.headers.get("Authorization"),
        request_id,
        client_request_id(request),
        forwarded_authorization=request.headers.get("X-Forwarded-Authorization"),
    )


def money_or_read(request: flask.Request) -> str:
    return "read" if request.method in ("GET", "HEAD") else "money"


def read_or_admin(request: flask.Request) -> str:
    return "read" if request.method in ("GET", "HEAD") else "admin"


def rate_limit(caller: Caller, action_class: str) -> Decision:
    """The caller's budget for this class of action (common/rate_limits.py); a 429 when
    it is spent, before anything is parsed, claimed or written."""
    principal = caller.principal
    rate = resolve(
        action_class,
        [grant.rate_limits for grant in principal.grants],
        principal.rate_limits,
        bootstrap.rate_limit_defaults(),
    )
    decision: Decision = bootstrap.rate_limiter().check(Bucket(principal.id, action_class), rate)
    if not decision.allowed:
        raise RateLimited(
            f"too many {action_class} requests; retry after the Retry-After seconds",
            headers=response_headers(decision),
            details={"action_class": action_class, "limit": decision.limit},
        )
    return decision


def endpoint(handler: Handler | None = None, *, action_class: Callable[[flask.Request], str] = money_or_read) -> Any:
    """Verify the caller and hold it to its rate limit, then map every error to the JSON
    error shape; an unexpected one is logged with its traceback and answered 500
    without it. The trusted issuers are settled when the function starts: a malformed
    setting, or the local issuer trusted in Google Cloud, stops it there; with
    warm_up_on_start, its clients are built there too."""
    if handler is None:
        return lambda decorated: endpoint(decorated, action_class=action_class)
    bootstrap.trusted_issuers()
    if get_settings().warm_up_on_start:
        bootstrap.warm_up(money=action_class is money_or_read)

    @wraps(handler)
    def wrapped(request: flask.Request) -> flask.Response:
        # every line logged while serving the request carries its trace (Cloud Logging)
        with tracing.bound(tracing.from_headers(request.headers), get_settings().gcp_project):
            return served(request)

    def served(request: flask.Request) -> flask.Response:
        started = time.perf_counter()
        timing.begin_request()
        rid = request_id(request)
        principal = None
        decision: Decision | None = None
        try:
            caller = authenticate(request, rid)
            principal = caller.principal.id
            decision = rate_limit(caller, action_class(request))
            response = handler(request, caller)
        except LedgerError as error:
            if error.status == 500:  # a guard the database enforces was hit: a bug to see
                log.error("ledger error", extra={"path": request.path, "code": error.code, "details": error.details})
            response = error_response(error)
        except Exception:
            log.exception("unhandled error", extra={"path": request.path})
            response = error_response(LedgerError(UNEXPECTED.get(action_class(request), "unexpected error")))
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = timing.server_timing(elapsed_ms)
        response.headers[REQUEST_ID_HEADER] = rid
        if decision is not None:  # a refusal after the limit was spent from carries it too
            response.headers.update(response_headers(decision))
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "ms": round(elapsed_ms, 2),
                "request_id": rid,
                "client_request_id": client_request_id(request),
                "trace": trace_id(request),
                "principal": principal,
            },
        )
        return response

    return wrapped


def require_method(request: flask.Request, *allowed: str) -> None:
    if request.method not in allowed:
        raise MethodNotAllowed(f"use {' or '.join(allowed)}", details={"allowed": list(allowed)})


def require_json(request: flask.Request) -> None:
    """A body is read only when it says it is JSON: a form post or a text body (a
    browser's cross-site form, a misconfigured client) is refused before any of it is
    read. JSON has one charset (RFC 8259), so another declared one is refused too."""
    if request.mimetype != "application/json" or request.mimetype_params.get("charset", "utf-8").lower() != "utf-8":
        raise UnsupportedMediaType(
            "send the body as Content-Type: application/json",
            details={"content_type": request.headers.get("Content-Type", "")[:100] or None},
        )


def json_object(request: flask.Request) -> dict[str, Any]:
    require_json(request)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    # At most one byte past the limit: a chunked body says no length up front, and
    # reading it whole first would let one request fill the instance's memory.
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    return loads_object(raw)


def parse(model: type[M], data: Any) -> M:
    return validated(model, data)


def money_action(
    request: flask.Request,
    caller: Caller,
    model: type[M],
    action: Callable[[Caller, M, str | None], Outcome],
    *,
    function: str,
) -> flask.Response:
    """A balance action: POST to the function's own path (`/`, or `/<function>` as a
    deployed URL may keep it), a JSON command, an Idempotency-Key, an idempotent outcome.
    Any other path is a 404, as on the functions with several routes: a request meant
    for another path must not move money here."""
    if path_segments(request, function):
        raise NotFound(f"no route for {request.path}", code="route_not_found")
    require_method(request, "POST")
    command = parse(model, json_object(request))
    key = request.headers.get(IDEMPOTENCY_HEADER)
    refuse_reserved_key(key)
    return outcome_response(action(caller, command, key))


def path_segments(request: flask.Request, prefix: str) -> list[str]:
    """Path segments after an optional leading `prefix` (deployed URLs may keep it)."""
    segments = [segment for segment in request.path.split("/") if segment]
    return segments[1:] if segments[:1] == [prefix] else segments


def _configure_logging() -> None:
    from common import logs
    from common.config import get_settings

    logs.configure(get_settings().log_level)


def _answer_what_the_framework_refuses() -> None:
    """functions-framework answers some paths itself, before the function runs, and in
    HTML: one its routing cannot match (a line break in it), /robots.txt, /favicon.ico.
    They get the one JSON error shape too. While functions-framework loads a main.py,
    `errorhandler` is its app's; anywhere else (tests), a stand-in that does nothing."""
    import functions_framework
    from werkzeug.exceptions import NotFound as NoRule

    def no_route(request: flask.Request, caller: Caller) -> flask.Response:
        raise NotFound(f"no route for {request.path}", code="route_not_found")

    functions_framework.errorhandler(NoRule)(lambda _error: endpoint(no_route)(flask.request))


_configure_logging()
_answer_what_the_framework_refuses()
