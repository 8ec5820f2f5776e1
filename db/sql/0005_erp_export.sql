-- The ERP export: the ledger's transactions, in a stable order, as journal batches.
--
-- Export order. Transaction ids are handed out before commit, so a reader that walks
-- ids can pass a lower id whose database transaction is still running and never come
-- back for it. The export therefore walks (created_xact, id) and reads only rows whose
-- creating database transaction is older than the oldest one still running
-- (pg_snapshot_xmin of the current snapshot): that set never changes again, so a
-- cursor over it misses nothing and repeats nothing.

-- Rows from before 0004 predate the column; they are all long committed and sort first.
ALTER TABLE ledger.transactions DISABLE TRIGGER transactions_append_only;
UPDATE ledger.transactions SET created_xact = '1'::xid8 WHERE created_xact IS NULL;
ALTER TABLE ledger.transactions ENABLE TRIGGER transactions_append_only;
ALTER TABLE ledger.transactions ALTER COLUMN created_xact SET NOT NULL;
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

-- Record a batch and move the cursor past it, only if the cursor is still where the
-- batch starts: two exporters racing cannot both take the same range.
CREATE FUNCTION erp.record_batch(
  p_stream text, p_id text, p_after_xact xid8, p_after_id bigint, p_last_xact xid8, p_last_id bigint,
  p_chart_version text, p_events integer, p_lines integer, p_totals jsonb
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = erp, pg_temp AS $$
BEGIN
  UPDATE cursors SET after_xact = p_last_xact, after_id = p_last_id, updated_at = now()
   WHERE name = p_stream AND after_xact = p_after_xact AND after_id = p_after_id;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  INSERT INTO batches (id, stream, after_xact, after_id, last_xact, last_id, chart_version,
                       event_count, line_count, totals)
  VALUES (p_id, p_stream, p_after_xact, p_after_id, p_last_xact, p_last_id, p_chart_version,
          p_events, p_lines, p_totals);
  RETURN true;
END $$;

-- Delivery outcomes. A delivered batch stays delivered; a batch that failed
-- `p_park_after` times is parked until an operator replays it.
CREATE FUNCTION erp.mark_delivered(p_id text, p_acknowledgement jsonb) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = erp, pg_temp AS $$
  UPDATE batches SET status = 'delivered', delivered_at = now(), attempts = attempts + 1,
                     last_error = NULL, acknowledgement = p_acknowledgement
   WHERE id = p_id AND status <> 'delivered'
$$;

CREATE FUNCTION erp.mark_failed(p_id text, p_error text, p_retry_in interval, p_park_after integer)
RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = erp, pg_temp AS $$
  UPDATE batches
     SET attempts = attempts + 1, last_error = left(p_error, 500), next_attempt_at = now() + p_retry_in,
         status = CASE WHEN attempts + 1 >= p_park_after THEN 'parked' ELSE 'pending' END
   WHERE id = p_id AND status = 'pending'
  RETURNING status
$$;

CREATE FUNCTION erp.replay(p_id text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = erp, pg_temp AS $$
  UPDATE batches SET status = 'pending', attempts = 0, next_attempt_at = now()
   WHERE id = p_id AND status = 'parked'
  RETURNING true
$$;

-- A new stream that starts at the horizon of finished database transactions, not at
-- the newest visible transaction, so a posting still running with an older transaction
-- id cannot commit behind the start and never be exported.
CREATE FUNCTION erp.open_stream(p_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = erp, pg_temp AS $$
DECLARE
  -- every transaction created before the oldest one still running is final: start
  -- after all of them (xid8 has no arithmetic; numeric does it)
  v_xact xid8 := ((pg_snapshot_xmin(pg_current_snapshot())::text::numeric - 1)::text)::xid8;
BEGIN
  INSERT INTO cursors (name, start_xact, start_id, after_xact, after_id)
  VALUES (p_name, v_xact, 9223372036854775807, v_xact, 9223372036854775807)
  ON CONFLICT (name) DO NOTHING;
END $$;

CREATE FUNCTION erp.save_chart(p_version text, p_chart jsonb) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = erp, pg_temp AS $$
  INSERT INTO charts (version, chart) VALUES (p_version, p_chart) ON CONFLICT (version) DO NOTHING
$$;

-- Privileges: the ERP export's own database role.
--
-- ledger_app is the role of the internet-facing functions. Moving the export cursor,
-- recording, marking and replaying batches, and opening streams belong to the
-- scheduled export alone: a compromised HTTP function must not be able to move the
-- cursor over transactions that were never sent. erp_exporter reads the ledger and
-- changes the export's state only through the erp.* functions; it cannot post money.
-- Its login (the exporter's IAM user in Google Cloud, ledger_erp locally) is granted
-- erp_exporter the way the functions' user is granted ledger_app.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'erp_exporter') THEN
    CREATE ROLE erp_exporter NOLOGIN;
  END IF;
END $$;

-- Every erp.* function changes the export's state: the functions' role (ledger_app)
-- may read the export's tables, and only erp_exporter may call them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA erp FROM PUBLIC;
GRANT USAGE ON SCHEMA erp TO ledger_app;
GRANT SELECT ON ALL TABLES IN SCHEMA erp TO ledger_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA erp TO erp_exporter;
GRANT USAGE ON SCHEMA ledger, erp TO erp_exporter;
GRANT SELECT ON ledger.transactions, ledger.entries, ledger.wallets, ledger.assets TO erp_exporter;
GRANT SELECT ON ALL TABLES IN SCHEMA erp TO erp_exporter;
GRANT EXECUTE ON FUNCTION ledger.iso_utc(timestamptz) TO erp_exporter;
