"""The shared ledger package deployed beside every function."""
