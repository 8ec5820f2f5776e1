"""The access store's caches of boundary facts: an entry another thread evicts between
a membership test and a lookup must cost a query, never a KeyError."""

from common.adapters.access_store import AccessStore
from common.auth.callers import WalletFacts


class EvictedMeanwhile(dict):
    """A cache whose every entry is evicted right after `in` has seen it."""

    def __contains__(self, key):
        present = super().__contains__(key)
        self.pop(key, None)
        return present

    def __getitem__(self, key):
        self.pop(key, None)
        return super().__getitem__(key)

    def keep(self, key, value):
        self[key] = value


class Store(AccessStore):
    def __init__(self):
        super().__init__(pool=None)
        self._wallets = EvictedMeanwhile({1: WalletFacts(1, "customer", "alice", (1,))})
        self._transactions = EvictedMeanwhile({7: [1]})
        self._lots = EvictedMeanwhile({9: 1})

    def _run(self, sql, **params):
        if "ledger.wallets WHERE" in sql:
            return [[1, "customer", "alice", [1]]]
        return [[1]]


def test_an_entry_evicted_between_the_test_and_the_lookup_is_fetched_again():
    store = Store()
    assert store.wallet_facts([1]) == {1: WalletFacts(1, "customer", "alice", (1,))}
    assert store.transaction_wallets(7) == [1]
    assert store.lot_wallet(9) == 1
