"""The ledger core: commands, posting rules and money values. No I/O, no client libraries."""
