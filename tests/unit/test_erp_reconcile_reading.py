"""The ERP reconciliation's reading (common/erp_export.py reconcile()) with an in-memory
store and ERP: it compares only a settled reading, waits between readings, gives up
without comparing, and reads a difference twice before reporting it. The real store,
under concurrent runs, is in tests/e2e/test_erp_export.py."""

import pytest

from common.erp_export import ReadingUnsettled, reconcile

BOOKED = {"period": "2026-12-01", "account": "1100", "currency": "IDR", "debit": 5, "credit": 0}


class Store:
    """Running totals with no rows; `delivered` counts per reading, in turn."""

    def __init__(self, delivered: list[int], summed: int = 3) -> None:
        self.delivered, self.summed, self.readings = delivered, summed, 0

    def fold_delivered(self, stream, batches=20):
        return 0

    def unsummed_count(self, stream):
        return 0

    def running_totals(self, stream, with_ids=False):
        self.readings += 1
        return [], self.summed, (["b"] * self.summed if with_ids else None)

    def status_counts(self, stream):
        return {"delivered": self.delivered[min(self.readings, len(self.delivered)) - 1]}

    def stream(self, stream):
        return ("0", 0), ("7", 9)

    def scanned_sums(self, batch_ids, batches=20):
        return []

    def chart(self, version):
        raise AssertionError("no rows, no chart")


class Erp:
    def __init__(self, answers: list[list[dict]]) -> None:
        self.answers = answers

    def totals(self):
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_a_reading_whose_batches_moved_is_read_again_after_a_pause():
    pauses = []
    store = Store(delivered=[4, 4, 3])  # two deliveries seen mid-reading, then settled
    report = reconcile(store, Erp([[]]), "erp", sleep=pauses.append, pause_s=0.5)
    assert report["ok"] and store.readings == 3 and pauses == [0.5, 1.0]


def test_a_reading_that_never_settles_compares_nothing():
    store = Store(delivered=[4])
    with pytest.raises(ReadingUnsettled):
        reconcile(store, Erp([[BOOKED]]), "erp", attempts=3, sleep=lambda _: None)
    assert store.readings == 3


def test_a_difference_is_read_twice_before_it_is_reported():
    # the ERP booked a batch its exporter had not marked delivered yet; the second
    # reading finds the batch delivered and summed (here: the ERP's answer agrees)
    store, pauses = Store(delivered=[3]), []
    report = reconcile(store, Erp([[BOOKED], []]), "erp", sleep=pauses.append, pause_s=0.5)
    assert report["ok"] and store.readings == 2 and pauses == [0.5]


def test_a_difference_that_stays_is_reported():
    store = Store(delivered=[3])
    report = reconcile(store, Erp([[BOOKED]]), "erp", sleep=lambda _: None)
    assert not report["ok"] and store.readings == 2
    assert report["differences"] == [
        {
            "period": "2026-12-01",
            "account": "1100",
            "currency": "IDR",
            "ledger_debit": 0,
            "ledger_credit": 0,
            "erp_debit": 5,
            "erp_credit": 0,
        }
    ]
