"""A small stand-in for the company's ERP: it books journal batches and can be told to fail.

    POST /batches          book a batch (JSON from common/erp_export.py). Needs the bearer
                           token. 201 booked; 409 a batch with this id is already booked;
                           422 the batch does not balance per currency (nothing booked).
    GET  /batches          every booked batch: id, events, lines, totals
    GET  /lines?transaction_id=N    the booked lines of one ledger transaction
    GET  /totals           booked debits and credits per period, account and currency
    GET  /transactions?after=N  how many booked batches hold each ledger transaction above
                           N (of the most recent 100,000): more than 1 is a double booking
    GET  /stats            counters: booked, duplicates, failed and dropped on purpose
    POST /control          {"fail_next": N, "status": 503}: answer the next N batches with
                           that status; {"drop_next": N}: answer 201 but book nothing (a
                           lost batch, for reconciliation); {"reset": true}: forget all

Every path can be prefixed with /books/NAME to use a separate set of books (so a test
can have an ERP of its own); without one, the books are "main".

With `--journal FILE`, every booking (and reset) is appended to FILE before it is
answered, and read back at start: like a real ERP, the receiver keeps what it booked
through a crash (`make faults` kills it mid-export). Lines themselves are not kept
there, only each batch's totals and transaction ids.

Run: python -m emulators.erp_receiver --port 54304 [--token T] [--no-lines] [--journal FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from collections import OrderedDict, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from emulators.json_http import JsonHandler

KEPT_TRANSACTIONS = 100_000


class Journal:
    """An append-only file of bookings, written before each is answered."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._drop_cut_line()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the server's life
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()  # to the kernel: a killed process loses nothing acknowledged

    def _drop_cut_line(self) -> None:
        """A line cut short by a kill mid-write was never acknowledged: cut it off, so the
        next booking starts a line of its own."""
        try:
            with open(self.path, "rb+") as file:
                data = file.read()
                if data and not data.endswith(b"\n"):
                    file.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    def records(self) -> list[dict[str, Any]]:
        with open(self.path, encoding="utf-8") as file:
            return [json.loads(line) for line in file]


class Ledger:
    """What the ERP has booked. One lock: the receiver is a test tool, not a hot path."""

    def __init__(self, keep_lines: bool, name: str = "main", journal: Journal | None = None) -> None:
        self.keep_lines = keep_lines
        self.name = name
        self.journal = journal
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}
        # the lines of the most recent transactions only, so a long-lived dev stack's
        # receiver stays small (totals cover everything)
        self.lines: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self.totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        # transaction id -> how many booked batches held it (the most recent ones)
        self.booked_in: OrderedDict[int, int] = OrderedDict()
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
            record = {
                "books": self.name,
                "batch": {
                    "batch_id": batch_id,
                    "event_count": batch.get("event_count"),
                    "line_count": len(lines),
                    "totals": {currency: {"debit": d, "credit": c} for currency, (d, c) in sums.items()},
                },
                "sums": _line_sums(lines),
                "transactions": sorted({line["transaction_id"] for line in lines}),
            }
            if self.journal:
                self.journal.append(record)
            self.apply(record)
            if self.keep_lines:
                for line in lines:
                    self.lines.setdefault(line["transaction_id"], []).append(line)
                while len(self.lines) > KEPT_TRANSACTIONS:
                    self.lines.popitem(last=False)
        return 201, {"batch_id": batch_id, "booked": len(lines)}

    def apply(self, record: dict[str, Any]) -> None:
        """A booking's effect on the books (under the lock, or at start from the journal)."""
        batch = record["batch"]
        self.batches[batch["batch_id"]] = batch
        for period, account, currency, debit, credit in record["sums"]:
            booked = self.totals[(period, account, currency)]
            booked[0] += debit
            booked[1] += credit
        for transaction_id in record["transactions"]:
            self.booked_in[transaction_id] = self.booked_in.get(transaction_id, 0) + 1
        while len(self.booked_in) > KEPT_TRANSACTIONS:
            self.booked_in.popitem(last=False)
        self.stats["booked"] += 1
        self.stats["lines"] += batch["line_count"]


def _line_sums(lines: list[dict[str, Any]]) -> list[list[Any]]:
    sums: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for line in lines:
        summed = sums[(line["period"], line["account"], line["currency"])]
        summed[0] += line["debit"]
        summed[1] += line["credit"]
    return [[*key, debit, credit] for key, (debit, credit) in sums.items()]


class Books:
    def __init__(self, keep_lines: bool, journal: Journal | None = None) -> None:
        self.keep_lines = keep_lines
        self.journal = journal
        self.lock = threading.Lock()
        self.books: dict[str, Ledger] = {}
        for record in journal.records() if journal else []:
            ledger = self._named(record["books"])
            if record.get("reset"):
                ledger.reset()
            else:
                ledger.apply(record)

    def _named(self, name: str) -> Ledger:
        ledger = self.books.get(name)
        if ledger is None:
            ledger = self.books[name] = Ledger(self.keep_lines, name, self.journal)
        return ledger

    def route(self, path: str) -> tuple[Ledger, str]:
        """(the books a path names, the path within them)."""
        name, rest = "main", path
        if path.startswith("/books/"):
            name, _, rest = path[len("/books/") :].partition("/")
            rest = "/" + rest
        with self.lock:
            return self._named(name), rest


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
                elif path == "/transactions":
                    after = int(parse_qs(url.query).get("after", ["0"])[0])
                    counts = {str(t): n for t, n in ledger.booked_in.items() if t > after}
                    self._answer(200, {"transactions": counts})
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
                        if ledger.journal:
                            ledger.journal.append({"books": ledger.name, "reset": True})
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
    parser.add_argument("--journal", help="keep every booking in this file, and read it back at start")
    args = parser.parse_args()
    journal = Journal(os.path.abspath(args.journal)) if args.journal else None
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(Books(not args.no_lines, journal), args.token))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
