-- The ERP reconciliation, incremental (docs/events-and-erp.md#reconciliation).
--
-- A delivered batch stays delivered, its range of the export order is fixed, and the
-- ledger rows in that range are append-only: what the ledger side of the reconciliation
-- sums for a delivered batch never changes. So each delivered batch is summed once, by
-- erp.fold_delivered() (90_erp_export.sql), into the running totals below, and a
-- reconciliation reads those totals instead of scanning every exported transaction
-- again: its cost follows what was delivered since the last run, not the ledger's age.

-- When the batch's ledger rows were added to erp.reconciled_sums; NULL until then.
ALTER TABLE erp.batches ADD COLUMN summed_at timestamptz;
ALTER TABLE erp.batches ADD CONSTRAINT batches_summed_when_delivered CHECK (summed_at IS NULL OR status = 'delivered');
CREATE INDEX batches_unsummed ON erp.batches (stream, seq) WHERE status = 'delivered' AND summed_at IS NULL;

-- Per stream, chart version, UTC day, asset and leg role: the debits and credits of the
-- ledger transactions in the stream's summed batches (the rows the chart maps to GL
-- accounts at comparison time, common/erp/reconcile.py).
CREATE TABLE erp.reconciled_sums (
  stream         text NOT NULL REFERENCES erp.cursors (name),
  chart_version  text NOT NULL REFERENCES erp.charts (version),
  day            text NOT NULL,
  asset_code     text NOT NULL,
  kind           text NOT NULL,
  model          text NOT NULL,
  system_role    text,
  debit          numeric NOT NULL CHECK (debit >= 0),
  credit         numeric NOT NULL CHECK (credit >= 0),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX reconciled_sums_key ON erp.reconciled_sums
  (stream, chart_version, day, asset_code, kind, model, system_role) NULLS NOT DISTINCT;
