-- The ERP export's state changes: recording batches, delivery outcomes, replays,
-- streams and charts.
--
-- Export order. Transaction ids are handed out before commit, so a reader that walks
-- ids can pass a lower id whose database transaction is still running and never come
-- back for it. The export therefore walks (created_xact, id) and reads only rows whose
-- creating database transaction is older than the oldest one still running
-- (pg_snapshot_xmin of the current snapshot): that set never changes again, so a
-- cursor over it misses nothing and repeats nothing. Only erp_exporter may call these
-- (99_grants.sql).

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

-- The actions a chart that excludes migrations gives no lines (common/erp/mapping.py
-- MIGRATION_ACTIONS; a test holds the two lists equal). Here, not from the caller: the
-- running totals below are kept for good, and a caller's wrong list would skew them.
CREATE FUNCTION erp.migration_actions() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ARRAY['opening_balance', 'migration_transfer'] $$;

-- The ERP reconciliation's ledger side of the given batches: per chart version, UTC day,
-- asset and leg role, the debits and credits of the ledger transactions in their
-- ranges, leaving out what the batch's chart gave no lines (migrations, when the chart
-- excludes them). A few batches at a time: the planner cannot tell how few rows a
-- batch's range holds (a row comparison: it guesses a tenth of the ledger) and would
-- rather scan and hash the whole of ledger.entries, so this walks the indexes, range by
-- range, without JIT: about 6 ms a batch of 1,000 transactions, where the hashed plan
-- took a second and grew with the ledger.
CREATE FUNCTION erp.batch_sums(p_ids text[])
RETURNS TABLE (chart_version text, day text, asset_code text, kind text, model text, system_role text,
               debit numeric, credit numeric)
LANGUAGE sql STABLE SET search_path = erp, pg_temp SET jit = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $$
  SELECT b.chart_version, to_char(t.effective_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), t.asset_code, w.kind, w.model,
         w.system_role, sum(CASE WHEN e.amount < 0 THEN -e.amount ELSE 0 END),
         sum(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END)
    FROM batches b
    JOIN charts c ON c.version = b.chart_version
    -- each batch's own range, by the export order's index (OFFSET 0: kept a subquery)
    CROSS JOIN LATERAL (
      SELECT * FROM ledger.transactions t
       WHERE (t.created_xact, t.id) > (b.after_xact, b.after_id) AND (t.created_xact, t.id) <= (b.last_xact, b.last_id)
      OFFSET 0) t
    JOIN ledger.entries e ON e.transaction_id = t.id
    JOIN ledger.wallets w ON w.id = e.wallet_id
    LEFT JOIN ledger.transactions o ON o.id = t.voids_transaction_id
   WHERE b.id = ANY (p_ids) AND b.status = 'delivered'
     AND NOT (coalesce((c.chart ->> 'exclude_migrations')::boolean, false)
              AND coalesce(o.action, t.action) = ANY (erp.migration_actions()))
   GROUP BY 1, 2, 3, 4, 5, 6
$$;

-- The ERP reconciliation's running totals (erp.reconciled_sums): add the sums of up to
-- `p_batches` delivered, not yet summed batches of the stream (oldest first) and mark
-- them summed, in one transaction, so each batch counts exactly once however often
-- this runs or is interrupted. Two runs at once take different batches (SKIP LOCKED).
-- Returns how many batches it summed; 0 when none was left to it.
CREATE FUNCTION erp.fold_delivered(p_stream text, p_batches integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = erp, pg_temp AS $$
DECLARE
  v_ids text[];
BEGIN
  SELECT array_agg(id) INTO v_ids
    FROM (SELECT id FROM batches
           WHERE stream = p_stream AND status = 'delivered' AND summed_at IS NULL
           ORDER BY seq LIMIT p_batches FOR UPDATE SKIP LOCKED) picked;
  IF v_ids IS NULL THEN
    RETURN 0;
  END IF;
  INSERT INTO reconciled_sums AS s (stream, chart_version, day, asset_code, kind, model, system_role, debit, credit)
  SELECT p_stream, x.chart_version, x.day, x.asset_code, x.kind, x.model, x.system_role, x.debit, x.credit
    FROM batch_sums(v_ids) x
  ON CONFLICT (stream, chart_version, day, asset_code, kind, model, system_role)
  DO UPDATE SET debit = s.debit + EXCLUDED.debit, credit = s.credit + EXCLUDED.credit, updated_at = now();
  UPDATE batches SET summed_at = now() WHERE id = ANY (v_ids);
  RETURN cardinality(v_ids);
END $$;
