"""The export pass against an in-memory store and ERP: batching, retries, parking, races."""

import json

import pytest

from common.erp.mapping import Leg, Transaction
from common.erp_export import DeliveryFailed, ErpExport, ExportError
from tests.unit.test_erp_mapping import CHART


class MemoryStore:
    """The Store protocol over lists and dicts, with the database functions' rules."""

    def __init__(self, transactions):
        self.rows = [((f"{100 + i}", t.transaction_id), t) for i, t in enumerate(transactions)]
        self.cursors = {"erp": ("0", 0)}
        self.batches = {}
        self.charts = {}
        self.steal_cursor_once = False

    def next_page(self, after, limit):
        return [row for row in self.rows if _key(row[0]) > _key(after)][:limit]

    def transactions_in(self, after, last):
        return [row for row in self.rows if _key(after) < _key(row[0]) <= _key(last)]

    def cursor(self, stream):
        return self.cursors[stream]

    def save_chart(self, chart):
        self.charts.setdefault(chart.version, chart)

    def chart(self, version):
        return self.charts[version]

    def record_batch(self, stream, batch_id, after, last, chart_version, events, lines, totals):
        if self.steal_cursor_once:  # another exporter got there first
            self.steal_cursor_once = False
            self.cursors[stream] = last
            return False
        if self.cursors[stream] != after:
            return False
        self.cursors[stream] = last
        self.batches[batch_id] = {
            "id": batch_id,
            "after_xact": after[0],
            "after_id": after[1],
            "last_xact": last[0],
            "last_id": last[1],
            "chart_version": chart_version,
            "event_count": events,
            "totals": totals,
            "status": "pending",
            "attempts": 0,
            "due": True,
        }
        return True

    def due(self, stream, limit):
        return [dict(b) for b in self.batches.values() if b["status"] == "pending" and b["due"]][:limit]

    def mark_delivered(self, batch_id, acknowledgement):
        batch = self.batches[batch_id]
        batch.update(status="delivered", attempts=batch["attempts"] + 1)

    def mark_failed(self, batch_id, error, retry_in_s, park_after):
        batch = self.batches[batch_id]
        batch["attempts"] += 1
        batch["retry_in_s"] = retry_in_s
        batch["status"] = "parked" if batch["attempts"] >= park_after else "pending"
        return batch["status"]

    def status_counts(self, stream):
        counts = {}
        for batch in self.batches.values():
            counts[batch["status"]] = counts.get(batch["status"], 0) + 1
        return counts


def _key(position):
    return (int(position[0]), position[1])


class MemoryErp:
    def __init__(self):
        self.fail_next = 0
        self.booked = {}
        self.deliveries = []

    def deliver(self, batch_id, body):
        self.deliveries.append(batch_id)
        if self.fail_next:
            self.fail_next -= 1
            raise DeliveryFailed("HTTP 503")
        if batch_id in self.booked:
            return {"duplicate": True}
        self.booked[batch_id] = json.loads(body)
        return {"booked": True}


def usage(transaction_id, amount=3):
    legs = (
        Leg(7, "alice", "customer", "personal", None, -amount),
        Leg(2, "system", "system", "system", "revenue", amount),
    )
    return Transaction(
        transaction_id, "usage", "USD", "2026-11-24T10:00:00Z", f"u-{transaction_id}", "gpu", None, None, legs
    )


def exporter(store, erp, **options):
    return ErpExport(store, lambda: erp, CHART, batch_events=3, retry_base_s=10, **options)


def booked_transactions(erp):
    return sorted(line["transaction_id"] for batch in erp.booked.values() for line in batch["lines"][::2])


def test_a_pass_exports_everything_in_batches_and_the_next_finds_nothing():
    store, erp = MemoryStore([usage(i) for i in range(1, 8)]), MemoryErp()
    report = exporter(store, erp).run_pass()
    assert (report.batches, report.events, report.lines, report.delivered) == (3, 7, 14, 3)
    assert report.caught_up and booked_transactions(erp) == list(range(1, 8))
    assert all(batch["totals"] == {"USD": {"debit": 9, "credit": 9}} for batch in list(erp.booked.values())[:2])
    again = exporter(store, erp).run_pass()
    assert (again.batches, again.delivered) == (0, 0) and len(erp.deliveries) == 3


def test_while_the_erp_is_down_batches_are_recorded_and_later_sent_once_with_backoff():
    store, erp = MemoryStore([usage(i) for i in range(1, 8)]), MemoryErp()
    erp.fail_next = 2
    export = exporter(store, erp)
    first = export.run_pass()
    # the first delivery failed: the other batches are recorded but not tried in this pass
    assert (first.batches, first.delivered, first.failed, first.erp_down) == (3, 0, 1, True)
    assert store.cursors["erp"] == store.rows[-1][0]  # the cursor is current all the same
    failed_first = next(b for b in store.batches.values() if b["attempts"] == 1)
    assert failed_first["retry_in_s"] == 10
    second = export.run_pass()  # the retry fails again (backoff doubles), the rest wait
    assert (second.retried, second.failed) == (1, 1) and failed_first["retry_in_s"] == 20
    third = export.run_pass()
    assert third.delivered == 3 and booked_transactions(erp) == list(range(1, 8))
    assert all(b["status"] == "delivered" for b in store.batches.values())


def test_a_batch_that_keeps_failing_is_parked_and_stops_being_retried():
    store, erp = MemoryStore([usage(1)]), MemoryErp()
    erp.fail_next = 10
    export = exporter(store, erp, park_after=2)
    assert export.run_pass().parked == []
    assert len(export.run_pass().parked) == 1
    (batch,) = store.batches.values()
    assert batch["status"] == "parked"
    assert export.run_pass().retried == 0 and len(erp.deliveries) == 2


def test_every_pass_reports_how_many_batches_are_parked_until_replayed():
    """What the parked-batches alert watches: the count now, not only this pass's."""
    store, erp = MemoryStore([usage(1)]), MemoryErp()
    erp.fail_next = 10
    export = exporter(store, erp, park_after=1)
    assert export.run_pass().parked_batches == 1
    later = export.run_pass()  # parks nothing new; the parked batch is still there
    assert later.parked == [] and later.parked_batches == 1
    next(iter(store.batches.values()))["status"] = "delivered"  # an operator replayed it
    assert export.run_pass().parked_batches == 0


def test_a_resend_is_the_same_batch_even_after_the_chart_file_changed():
    from common.erp.chart import Chart

    store, erp = MemoryStore([usage(1)]), MemoryErp()
    erp.fail_next = 1
    exporter(store, erp).run_pass()
    changed = Chart.from_dict({**CHART.sections, "default": {**CHART.sections["default"], "revenue": "4999"}})
    ErpExport(store, lambda: erp, changed, batch_events=3).run_pass()
    (batch,) = erp.booked.values()
    assert {line["account"] for line in batch["lines"]} == {"2300", "4000"}  # the chart it was built with


def test_a_pass_that_loses_the_race_for_the_cursor_stops():
    store, erp = MemoryStore([usage(i) for i in range(1, 5)]), MemoryErp()
    store.steal_cursor_once = True
    report = exporter(store, erp).run_pass()
    assert (report.batches, report.delivered) == (0, 0) and erp.deliveries == []


def test_lines_that_do_not_balance_are_never_sent():
    broken = Transaction(
        1, "usage", "USD", "2026-11-24T10:00:00Z", None, None, None, None,
        (Leg(7, "a", "customer", "personal", None, -3), Leg(2, "s", "system", "system", "revenue", 2)),
    )  # fmt: skip
    store, erp = MemoryStore([broken]), MemoryErp()
    with pytest.raises(ExportError, match="does not balance"):
        exporter(store, erp).run_pass()
    assert erp.deliveries == [] and store.batches == {}


def test_a_short_page_ends_the_pass_caught_up_so_it_never_chases_live_traffic():
    """Beside live traffic a page may always find a few new transactions: a page shorter
    than a batch means the horizon was reached, and the rest is the next pass's."""

    class GrowingStore(MemoryStore):
        def next_page(self, after, limit):
            page = super().next_page(after, limit)
            if len(page) < limit:  # live traffic commits one more each time the tail is read
                n = len(self.rows) + 1
                self.rows.append(((f"{100 + n}", n), usage(n)))
            return page

    store, erp = GrowingStore([usage(i) for i in range(1, 8)]), MemoryErp()
    report = exporter(store, erp).run_pass()
    assert report.caught_up and report.batches == 3 and report.events == 7


def test_a_pass_counts_its_events_into_its_pacer_so_a_minimum_rate_can_hold():
    """A paced pass rests only while ahead of LEDGER_ERP_MIN_RATE events a second
    (common/pacing.py): for that its pacer must know every event it exported."""
    from common.pacing import Pacer, PacingSettings

    pacers = []

    def pacer():
        pacers.append(Pacer(PacingSettings(mode="fixed", min_rate=2000), sleep=lambda s: None))
        return pacers[-1]

    store, erp = MemoryStore([usage(i) for i in range(1, 8)]), MemoryErp()
    report = exporter(store, erp, pacer=pacer).run_pass()
    assert report.events == 7 and pacers[0].items == 7 and report.pacing["min_rate"] == 2000
