"""Concurrency through the deployed shape: many clients, one wallet or two."""

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.support import balance, http, key, new_wallet, sql


def test_sixteen_clients_spend_one_wallet_funded_for_exactly_300_usages(stack):
    wallet = new_wallet(stack, funded=300 * 10)
    lowest_seen = []
    stop = threading.Event()

    def watch_balance():
        while not stop.is_set():
            lowest_seen.append(balance(stack, wallet))

    def client(n):
        codes = []
        for i in range(50):
            body = {"wallet_id": wallet, "asset": "TST", "amount": 10, "usage_id": key(f"c{n}-{i}"), "product": "p"}
            response = http(stack, "usage", body, key())
            codes.append(response.status_code if response.status_code != 422 else response.json()["error"]["code"])
        return codes

    watcher = threading.Thread(target=watch_balance)
    watcher.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            results = [code for codes in pool.map(client, range(16)) for code in codes]
    finally:
        stop.set()
        watcher.join()
    assert results.count(201) == 300
    assert results.count("insufficient_funds") == 500
    assert balance(stack, wallet) == 0
    assert min(lowest_seen) >= 0
    assert sql(stack, "SELECT min(balance_after) FROM ledger.entries WHERE wallet_id = :w", w=wallet)[0][0] == 0


def test_opposite_transfers_never_deadlock_a_caller_and_conserve_totals(stack):
    a, b = new_wallet(stack, funded=100_000), new_wallet(stack, funded=100_000)

    def send(pair):
        source, target, n = pair
        body = {"from_wallet_id": source, "to_wallet_id": target, "asset": "TST", "amount": 1 + n % 7}
        return http(stack, "transfer", body, key()).status_code

    work = [(a, b, n) for n in range(200)] + [(b, a, n) for n in range(200)]
    work = [item for pair in zip(work[:200], work[200:], strict=True) for item in pair]  # interleave directions
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, work))
    assert statuses.count(201) == 400, {s: statuses.count(s) for s in set(statuses)}
    assert balance(stack, a) + balance(stack, b) == 200_000
    assert balance(stack, a) == 100_000  # both directions moved the same amounts
