"""A small stand-in for the payment provider: it charges funding references, and a test
tells it to confirm, decline, be slow or fail.

    POST /charges          {"funding_ref", "amount", "asset"} with an Idempotency-Key and the
                           bearer token. 201 {"charge_id", "status": confirmed|declined, ...};
                           the same key again answers the same charge (200), and charges
                           nothing more; the same key with another body is a 422.
    GET  /charges?funding_ref=R   the charges made on one funding reference
    POST /control          {"funding_ref": R, "mode": "confirm"|"decline", "delay_s": S,
                           "fail_next": N}: how charges on R are answered from now (without
                           funding_ref: every reference without its own setting). A slow
                           charge is made first, then answered after delay_s (a client that
                           gave up finds it by its key); fail_next answers the next N with
                           503 and charges nothing. "answer": {...} answers new charges on R
                           with that body (201), charging nothing: a provider's malformed
                           answer. {"funding_ref": R, "forget_keys": true} forgets the keys of
                           R's charges so far, as a real provider does after a day or so:
                           they stay listed, and the same key charges anew.
                           {"reset": true} forgets everything.

Run: python -m emulators.payment_provider --port 54306 [--token T]
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from emulators.json_http import JsonHandler


@dataclass
class Behaviour:
    mode: str = "confirm"
    delay_s: float = 0.0
    fail_next: int = 0
    answer: dict[str, Any] | None = None


class Provider:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.made: list[dict[str, Any]] = []  # every charge, with its key
        self.charges: dict[str, dict[str, Any]] = {}  # the same, by the keys not yet forgotten
        self.default = Behaviour()
        self.by_ref: dict[str, Behaviour] = {}

    def behaviour(self, funding_ref: str) -> Behaviour:
        return self.by_ref.get(funding_ref, self.default)

    def control(self, body: dict[str, Any]) -> None:
        with self.lock:
            if body.get("reset"):
                self.reset()
            ref = body.get("funding_ref")
            if body.get("forget_keys"):
                forgotten = [key for key, charge in self.charges.items() if charge["request"]["funding_ref"] == ref]
                for key in forgotten:
                    del self.charges[key]
            current = self.behaviour(ref) if ref else self.default
            updated = Behaviour(
                mode=str(body.get("mode", current.mode)),
                delay_s=float(body.get("delay_s", current.delay_s)),
                fail_next=int(body.get("fail_next", current.fail_next)),
                answer=body.get("answer", current.answer),
            )
            if ref:
                self.by_ref[ref] = updated
            else:
                self.default = updated

    def charge(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        request = {field: body.get(field) for field in ("funding_ref", "amount", "asset")}
        if not key or not isinstance(request["funding_ref"], str) or not isinstance(request["amount"], int):
            return 400, {"error": "a charge needs an Idempotency-Key, a funding_ref and an integer amount"}, 0.0
        with self.lock:
            behaviour = self.behaviour(request["funding_ref"])
            known = self.charges.get(key)
            if known is not None:
                if known["request"] != request:
                    return 422, {"error": "this Idempotency-Key was used for another charge"}, 0.0
                return 200, known["answer"], behaviour.delay_s
            if behaviour.fail_next:
                behaviour.fail_next -= 1
                return 503, {"error": "failing on purpose"}, 0.0
            if behaviour.answer is not None:
                return 201, behaviour.answer, 0.0
            declined = behaviour.mode == "decline"
            answer = {
                "charge_id": f"ch_{len(self.made) + 1}",
                "status": "declined" if declined else "confirmed",
                "reason": "card_declined" if declined else None,
                **request,
            }
            self.charges[key] = {"request": request, "answer": answer, "key": key}
            self.made.append(self.charges[key])
        return 201, answer, behaviour.delay_s

    def listed(self, funding_ref: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {**charge["answer"], "idempotency_key": charge["key"]}
                for charge in self.made
                if charge["request"]["funding_ref"] == funding_ref
            ]


def handler(provider: Provider, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            if url.path in ("/", "/health"):
                self._answer(200, {"ok": True})
            elif url.path == "/charges":
                ref = parse_qs(url.query).get("funding_ref", [""])[0]
                self._answer(200, {"charges": provider.listed(ref)})
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            path = urlparse(self.path).path
            try:
                body = self._body(empty={})
            except ValueError:
                self._answer(400, {"error": "the body is not JSON"})
                return
            if not isinstance(body, dict):
                self._answer(400, {"error": "the body is not a JSON object"})
            elif path == "/control":
                provider.control(body)
                self._answer(200, {"ok": True})
            elif path == "/charges":
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    self._answer(401, {"error": "missing or wrong credential"})
                    return
                status, answer, delay_s = provider.charge(self.headers.get("Idempotency-Key", ""), body)
                if delay_s:
                    time.sleep(delay_s)  # charged already: a client that gave up finds it by its key
                self._answer(status, answer)
            else:
                self._answer(404, {"error": "not found"})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(Provider(), args.token))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
