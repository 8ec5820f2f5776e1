"""The ERP cost-revenue export: the chart of accounts and the mapping from ledger
transactions to balanced journal lines. No I/O here; see common/erp_export.py."""
