"""The wallets the unit tests of authorization judge boundaries on: alice's and bob's
personal wallets; acme's tree 10 > 11 > 12; globex's root 20; a system account 99."""

from common.auth.callers import WalletFacts

WALLETS = {
    1: WalletFacts(1, "customer", "alice", (1,)),
    2: WalletFacts(2, "customer", "bob", (2,)),
    10: WalletFacts(10, "customer", "acme", (10,)),
    11: WalletFacts(11, "customer", "acme-research", (10, 11)),
    12: WalletFacts(12, "customer", "acme-research-ml", (10, 11, 12)),
    20: WalletFacts(20, "customer", "globex", (20,)),
    99: WalletFacts(99, "system", "system", (99,)),
}
