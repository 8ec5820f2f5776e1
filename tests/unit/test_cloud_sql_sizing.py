"""Cloud SQL sizing from database CPU per posting (bench/sizing.py)."""

import pytest

from bench import db_time, sizing


def test_vcpus_are_rate_times_cpu_over_target_utilisation():
    assert sizing.vcpus(0.6, 7_000, 0.6) == pytest.approx(7.0)
    assert sizing.vcpus(1.0, 700, 0.5) == pytest.approx(1.4)


def test_the_machine_is_the_smallest_size_that_covers_it_and_none_beyond_one_primary():
    assert sizing.machine(7.0) == 8
    assert sizing.machine(0.1) == 2
    assert sizing.machine(sizing.MAX_ENTERPRISE_PLUS_VCPUS + 1) is None


def test_one_primary_tops_out_where_its_vcpus_reach_the_target():
    assert sizing.ceiling(1.0, 0.6) == sizing.MAX_ENTERPRISE_PLUS_VCPUS * 600


def test_the_table_names_each_rate_and_the_ceiling():
    table = sizing.table({"ledger.commit_posting()": 0.5})
    assert "7,000/s" in table and "| ledger.commit_posting() | 0.500 |" in table


def test_db_time_names_the_guard_a_statement_serves():
    assert (
        db_time.guard("INSERT INTO ledger.outbox (transaction_id) SELECT DISTINCT t FROM new_entries") == "outbox row"
    )
    assert db_time.guard('SELECT 1 FROM ONLY "ledger"."wallets" x WHERE id = $1 FOR KEY SHARE OF x').startswith(
        "foreign-key"
    )
    assert db_time.guard("UPDATE wallets SET balance = balance + $1").startswith("wallet rows")
