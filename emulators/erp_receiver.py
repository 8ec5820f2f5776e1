"""A small stand-in for the company's ERP: it books journal batches and can be told to fail.

    POST /batches          book a batch (JSON from common/erp_export.py). Needs the bearer
                           token. 201 booked; 409 a batch with this id is already booked;
                           422 the batch does not balance per currency (nothing booked).
    GET  /batches          every booked batch: id, events, lines, totals
    GET  /lines?transaction_id=N    the booked lines of one ledger transaction
    GET  /totals           booked debits and credits per period, account and currency
    GET  /stats            counters: booked, duplicates, failed and dropped on purpose
    POST /control          {"fail_next": N, "status": 503}: answer the next N batches with
                           that status; {"drop_next": N}: answer 201 but book nothing (a
                           lost batch, for reconciliation); {"reset": true}: forget all

Every path can be prefixed with /books/NAME to use a separate set of books (so a test
can have an ERP of its own); without one, the books are "main".

Run: python -m emulators.erp_receiver --port 54304 [--token T] [--no-lines]
"""

from __future__ import annotations

import argparse
import threading
from collections import OrderedDict, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from emulators.json_http import JsonHandler

KEPT_TRANSACTIONS = 100_000


class Ledger:
    """What the ERP has booked. One lock: the receiver is a test tool, not a hot path."""

    def __init__(self, keep_lines: bool) -> None:
        self.keep_lines = keep_lines
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}
        # the lines of the most recent transactions only, so a long-lived dev stack's
        # receiver stays small (totals cover everything)
        self.lines: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self.totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.stats = {"booked": 0, "lines": 0, "duplicates": 0, "failed": 0, "dropped": 0, "unbalanced": 0}
        self.fail_next, self.fail_status, self.drop_next = 0, 503, 0

    def book(self, batch: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        batch_id = batch.get("batch_id")
        lines = batch.get("lines")
        if not isinstance(batch_id, str) or not isinstance(lines, list) or not lines:
            return 400, {"error": "a batch needs a batch_id and lines"}
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                self.stats["failed"] += 1
                return self.fail_status, {"error": "failing on purpose"}
            if batch_id in self.batches:
                self.stats["duplicates"] += 1
                return 409, {"batch_id": batch_id, "duplicate": True}
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for line in lines:
            sums[line["currency"]][0] += line["debit"]
            sums[line["currency"]][1] += line["credit"]
        if any(debit != credit for debit, credit in sums.values()):
            with self.lock:
                self.stats["unbalanced"] += 1
            return 422, {"error": "the batch does not balance", "totals": sums}
        with self.lock:
            if batch_id in self.batches:  # a copy booked it while this one was checked
                self.stats["duplicates"] += 1
                return 409, {"batch_id": batch_id, "duplicate": True}
            if self.drop_next:
                self.drop_next -= 1
                self.stats["dropped"] += 1
                return 201, {"batch_id": batch_id, "booked": len(lines)}  # and then lost
            self.batches[batch_id] = {
                "batch_id": batch_id,
                "event_count": batch.get("event_count"),
                "line_count": len(lines),
                "totals": {currency: {"debit": d, "credit": c} for currency, (d, c) in sums.items()},
            }
            for line in lines:
                booked = self.totals[(line["period"], line["account"], line["currency"])]
                booked[0] += line["debit"]
                booked[1] += line["credit"]
                if self.keep_lines:
                    self.lines.setdefault(line["transaction_id"], []).append(line)
            while len(self.lines) > KEPT_TRANSACTIONS:
                self.lines.popitem(last=False)
            self.stats["booked"] += 1
            self.stats["lines"] += len(lines)
        return 201, {"batch_id": batch_id, "booked": len(lines)}


class Books:
    def __init__(self, keep_lines: bool) -> None:
        self.keep_lines = keep_lines
        self.lock = threading.Lock()
        self.books: dict[str, Ledger] = {}

    def route(self, path: str) -> tuple[Ledger, str]:
        """(the books a path names, the path within them)."""
        name, rest = "main", path
        if path.startswith("/books/"):
            name, _, rest = path[len("/books/") :].partition("/")
            rest = "/" + rest
        with self.lock:
            ledger = self.books.get(name)
            if ledger is None:
                ledger = self.books[name] = Ledger(self.keep_lines)
        return ledger, rest


def handler(books: Books, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            ledger, path = books.route(url.path)
            with ledger.lock:
                if path in ("/", "/health"):
                    self._answer(200, {"ok": True})
                elif path == "/batches":
                    self._answer(200, {"batches": list(ledger.batches.values())})
                elif path == "/lines":
                    transaction_id = int(parse_qs(url.query).get("transaction_id", ["0"])[0])
                    self._answer(200, {"lines": ledger.lines.get(transaction_id, [])})
                elif path == "/totals":
                    rows = [
                        {"period": p, "account": a, "currency": c, "debit": d, "credit": cr}
                        for (p, a, c), (d, cr) in sorted(ledger.totals.items())
                    ]
                    self._answer(200, {"totals": rows})
                elif path == "/stats":
                    self._answer(200, dict(ledger.stats))
                else:
                    self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            ledger, path = books.route(urlparse(self.path).path)
            try:
                body = self._body()
            except ValueError:
                self._answer(400, {"error": "the body is not JSON"})
                return
            if path == "/control":
                with ledger.lock:
                    if body.get("reset"):
                        ledger.reset()
                    ledger.fail_next = int(body.get("fail_next", ledger.fail_next))
                    ledger.fail_status = int(body.get("status", ledger.fail_status))
                    ledger.drop_next = int(body.get("drop_next", ledger.drop_next))
                self._answer(200, {"ok": True})
            elif path == "/batches":
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    self._answer(401, {"error": "missing or wrong credential"})
                    return
                self._answer(*ledger.book(body))
            else:
                self._answer(404, {"error": "not found"})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--no-lines", action="store_true", help="keep totals only (the 1,000,000-event benchmark)")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(Books(not args.no_lines), args.token))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
