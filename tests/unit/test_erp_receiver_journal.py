"""The local ERP receiver keeps what it booked through a crash (emulators/erp_receiver.py,
--journal): `make faults` kills it mid-export and then counts every booking."""

from emulators.erp_receiver import Books, Journal


def _batch(batch_id: str, *transactions: int) -> dict:
    lines = []
    for transaction_id in transactions:
        for debit, credit in ((5, 0), (0, 5)):
            lines.append(
                {
                    "transaction_id": transaction_id,
                    "period": "2026-12-01",
                    "account": "1000" if debit else "4000",
                    "currency": "IDR",
                    "debit": debit,
                    "credit": credit,
                }
            )
    return {"batch_id": batch_id, "event_count": len(transactions), "lines": lines}


def test_bookings_and_resets_survive_a_restart(tmp_path):
    path = str(tmp_path / "journal.jsonl")
    books = Books(keep_lines=True, journal=Journal(path))
    main, _ = books.route("/batches")
    other, _ = books.route("/books/other/batches")
    assert main.book(_batch("b1", 1, 2))[0] == 201
    assert main.book(_batch("b2", 3))[0] == 201
    assert other.book(_batch("x1", 9))[0] == 201
    assert main.book(_batch("b1", 1, 2))[0] == 409  # a resend is not booked again
    other.journal.append({"books": "other", "reset": True})
    other.reset()

    again = Books(keep_lines=True, journal=Journal(path))  # the receiver restarted
    main, _ = again.route("/batches")
    other, _ = again.route("/books/other/batches")
    assert set(main.batches) == {"b1", "b2"} and not other.batches
    assert dict(main.booked_in) == {1: 1, 2: 1, 3: 1}
    assert dict(main.totals) == {("2026-12-01", "1000", "IDR"): [15, 0], ("2026-12-01", "4000", "IDR"): [0, 15]}
    assert main.stats["booked"] == 2 and main.stats["lines"] == 6
    assert main.book(_batch("b2", 3))[0] == 409  # still a duplicate after the restart


def test_a_line_cut_short_by_a_kill_was_never_acknowledged(tmp_path):
    path = tmp_path / "journal.jsonl"
    books = Books(keep_lines=False, journal=Journal(str(path)))
    books.route("/batches")[0].book(_batch("b1", 1))
    with open(path, "a") as file:
        file.write('{"books": "main", "batch": {"batch_id": "b2"')  # killed mid-write
    again = Books(keep_lines=False, journal=Journal(str(path)))
    assert set(again.route("/batches")[0].batches) == {"b1"}
    assert again.route("/batches")[0].book(_batch("b3", 3))[0] == 201  # on a line of its own
    assert set(Books(keep_lines=False, journal=Journal(str(path))).route("/batches")[0].batches) == {"b1", "b3"}


def test_a_transaction_booked_in_two_batches_counts_twice(tmp_path):
    books = Books(keep_lines=False, journal=None)
    ledger, _ = books.route("/batches")
    ledger.book(_batch("b1", 1, 2))
    ledger.book(_batch("b2", 2, 3))  # transaction 2 again, under another batch id
    assert dict(ledger.booked_in) == {1: 1, 2: 2, 3: 1}
