"""The daily reconciliation's log line (common/daily_reconciliation.py): the invariants
that fail, how many rows each, and their ids, never the money in those rows."""

import json

from common.daily_reconciliation import fields

ANSWER = {
    "ok": False,
    "mode": "incremental",
    "horizon": {"from": ["700", 41], "to": ["700", 41], "transactions_passed": 0},
    "examined": {"transactions": 3, "entries": 6, "lot_movements": 0, "spend_charges": 0, "wallets": 9},
    "violations": {
        # (wallet, cached balance, last running balance) and (transaction, asset, sum, legs)
        "running_balance_matches_cache": [[23, 987654321, 987654320]],
        "every_transaction_balances": [[42, "IDR", 123456789, 1], [43, "IDR", 55555, 1]],
    },
}


def test_a_violation_is_named_counted_and_identified_without_its_amounts():
    line = fields(ANSWER)
    assert line["event"] == "ledger_reconciliation" and line["ok"] is False
    assert line["violation_count"] == 2
    assert line["violations"] == {"running_balance_matches_cache": 1, "every_transaction_balances": 2}
    assert line["violation_ids"] == {"running_balance_matches_cache": [23], "every_transaction_balances": [42, 43]}
    assert not line["checkpoint_moved"] and line["transactions_passed"] == 0
    text = json.dumps(line)
    for amount in ("987654321", "987654320", "123456789", "55555"):
        assert amount not in text


def test_a_clean_run_says_how_far_the_checkpoint_moved():
    horizon = {"from": ["700", 41], "to": ["705", 44], "transactions_passed": 3}
    clean = {**ANSWER, "ok": True, "violations": {}, "horizon": horizon}
    line = fields(clean)
    assert line["ok"] and line["violation_count"] == 0 and line["violations"] == {} == line["violation_ids"]
    assert line["checkpoint_moved"] and line["checkpoint_to"] == ["705", 44] and line["transactions_passed"] == 3
