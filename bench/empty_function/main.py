"""Cold-start yardsticks, started the same way as our functions (bench/cold_start.py).

- `empty`: an empty HTTP function, a plain reference.
- `yardstick` (`yardstick_event` for a function pushed by Pub/Sub): a function's own
  yardstick. Its first request imports the design's
  packages that function needs (LEDGER_YARDSTICK, names from bench/yardsticks.py) and
  makes a first call to each, in the order a request meets them, then to any other
  dependency the first request calls (the ERP, with http.client); later
  requests do nothing. Nothing of common/ is imported: what it costs is the design's alone.
"""

import os
import threading

import functions_framework

_done: list[bool] = []
_lock = threading.Lock()


def _pydantic(request):
    import pydantic

    class Body(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid", strict=True)
        wallet_id: int
        asset: str
        amount: int

    Body.model_validate({"wallet_id": 1, "asset": "BENCH", "amount": 1})


def _google_auth(request):
    """Verify the request's bearer token against its issuer's certs, as every HTTP call is."""
    import google.auth.transport.urllib3
    import urllib3
    from google.oauth2 import id_token

    token = request.headers["Authorization"].removeprefix("Bearer ")
    transport = google.auth.transport.urllib3.Request(urllib3.PoolManager())
    id_token.verify_token(token, transport, audience=None, certs_url=os.environ["LEDGER_YARDSTICK_CERTS_URL"])


def _pg8000(request):
    import pg8000.native

    env = os.environ
    connection = pg8000.native.Connection(
        env["LEDGER_DB_USER"],
        host=env["LEDGER_DB_HOST"],
        port=int(env["LEDGER_DB_PORT"]),
        database=env["LEDGER_DB_NAME"],
        password=env["LEDGER_DB_PASSWORD"],
    )
    connection.run("SELECT 1")
    connection.close()


def _redis(request):
    import redis

    redis.Redis.from_url(os.environ["LEDGER_REDIS_URL"]).ping()


def _firestore(request):
    from google.cloud import firestore

    client = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    client.collection("yardstick").document("first-call").get()


def _pubsub(request):
    from google.cloud import pubsub_v1

    client = pubsub_v1.PublisherClient()
    topic = client.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["LEDGER_YARDSTICK_TOPIC"])
    client.publish(topic, b"yardstick").result(timeout=30)


def _erp(request):
    """The ERP's booked totals, as erp_reconcile reads them, with http.client: the
    standard library's client, which the functions framework has loaded already."""
    import http.client
    import json
    from urllib.parse import urlsplit

    url = urlsplit(os.environ["LEDGER_ERP_URL"].rstrip("/") + "/totals")
    token = os.environ.get("LEDGER_ERP_TOKEN")
    kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    connection = kind(url.netloc, timeout=30)
    try:
        connection.request("GET", url.path, headers={"Authorization": f"Bearer {token}"} if token else {})
        json.loads(connection.getresponse().read())
    finally:
        connection.close()


FIRST_CALLS = {
    "pydantic": _pydantic,
    "google-auth": _google_auth,
    "pg8000": _pg8000,
    "redis": _redis,
    "firestore": _firestore,
    "pubsub": _pubsub,
    "erp": _erp,
}


@functions_framework.http
def empty(request):
    return "ok"


def _first_calls(request):
    if not _done:
        with _lock:
            if not _done:
                for name in filter(None, os.environ.get("LEDGER_YARDSTICK", "").split(",")):
                    FIRST_CALLS[name](request)
                _done.append(True)


@functions_framework.http
def yardstick(request):
    _first_calls(request)
    return "ok"


@functions_framework.cloud_event
def yardstick_event(cloud_event):
    """For the functions Cloud Scheduler's ticks start: a Pub/Sub push, as theirs."""
    _first_calls(None)
