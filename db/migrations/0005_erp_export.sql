-- The ERP export's order over the ledger, and its state: charts, cursors, batches.
--
-- The export walks (created_xact, id) below the oldest running transaction
-- (db/schema/90_erp_export.sql explains why); rows from before 0004 predate the column,
-- are all long committed, and sort first. Transactions are append-only: the backfill
-- is a rewrite of the column (ALTER ... TYPE ... USING), which fires no row trigger, so
-- no append-only guard has to be switched off or be absent for it.
ALTER TABLE ledger.transactions ALTER COLUMN created_xact TYPE xid8 USING coalesce(created_xact, '1'::xid8),
  ALTER COLUMN created_xact SET NOT NULL;
CREATE INDEX transactions_export_order ON ledger.transactions (created_xact, id);

CREATE SCHEMA erp;

-- Each chart of accounts a batch was built with, so a batch re-sent later is the same
-- batch even after the chart file changed.
CREATE TABLE erp.charts (
  version    text PRIMARY KEY,
  chart      jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Where each export stream stands: everything after its start, up to its cursor, is
-- in a batch. The main stream 'erp' starts at the beginning of the ledger; another one
-- can start at go-live, or at the ledger's tail for a test (erp.open_stream).
CREATE TABLE erp.cursors (
  name        text PRIMARY KEY,
  start_xact  xid8 NOT NULL DEFAULT '0'::xid8,
  start_id    bigint NOT NULL DEFAULT 0,
  after_xact  xid8 NOT NULL DEFAULT '0'::xid8,
  after_id    bigint NOT NULL DEFAULT 0,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT cursors_forward CHECK ((after_xact, after_id) >= (start_xact, start_id))
);
INSERT INTO erp.cursors (name) VALUES ('erp');

-- A batch is a range of the export order under one chart. Its id is derived from both
-- (common/erp/mapping.py: batch_id), so the same input always gives the same batch and
-- the ERP can drop a batch it already has.
CREATE TABLE erp.batches (
  id              text PRIMARY KEY,
  seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  stream          text NOT NULL REFERENCES erp.cursors (name),
  after_xact      xid8 NOT NULL,
  after_id        bigint NOT NULL,
  last_xact       xid8 NOT NULL,
  last_id         bigint NOT NULL,
  chart_version   text NOT NULL REFERENCES erp.charts (version),
  event_count     integer NOT NULL CHECK (event_count > 0),
  line_count      integer NOT NULL CHECK (line_count > 0),
  totals          jsonb NOT NULL,  -- {currency: {debit, credit}}
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'parked')),
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz,
  acknowledgement jsonb,
  CONSTRAINT batches_delivered_when CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
  CONSTRAINT batches_range_forward CHECK ((last_xact, last_id) > (after_xact, after_id))
);
CREATE INDEX batches_due ON erp.batches (next_attempt_at) WHERE status = 'pending';
CREATE INDEX batches_parked ON erp.batches (seq) WHERE status = 'parked';
