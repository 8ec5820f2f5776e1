-- The transactional outbox: every ledger transaction's event is written by the same
-- database transaction that posts it, so an event exists exactly when its posting does
-- (a refused or rolled-back posting leaves none) and nothing is lost when Pub/Sub is
-- down. A relay publishes pending rows and marks them; `published_at IS NULL` is the
-- backlog, and a row that keeps failing shows its attempts and last error.
--
-- A statement-level trigger on entries writes the outbox row of every transaction in
-- the INSERT (all legs of a transaction arrive in one INSERT: they must balance per
-- statement). The row holds the event id; the event's content is the transaction and
-- its entries, which are append-only, and the legs' wallets, so ledger.outbox_events
-- (30_read_views.sql) renders it when it is read. That keeps the posting's own cost to
-- one small insert (bench/results/notes.md: the outbox event rendered on read).

CREATE FUNCTION ledger.write_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A transaction's legs normally arrive in one INSERT; should a second balanced INSERT
  -- add more in the same database transaction, its event is already there, and the
  -- view renders every leg.
  INSERT INTO ledger.outbox (transaction_id) SELECT DISTINCT transaction_id FROM new_entries
  ON CONFLICT (transaction_id) DO NOTHING;
  RETURN NULL;
END $$;

-- Named to fire after entries_must_balance (same-event triggers fire in name order):
-- only balanced postings get this far.
CREATE TRIGGER entries_write_outbox AFTER INSERT ON ledger.entries
  REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.write_outbox();

-- The functions read events and record publish attempts through these two functions
-- only: an event goes from pending to published once, never back, and cannot be marked
-- published by a plain UPDATE that would silently drop the backlog.
CREATE FUNCTION ledger.mark_published(p_ids bigint[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
  UPDATE outbox SET published_at = clock_timestamp(), attempts = attempts + 1, last_error = NULL
   WHERE transaction_id = ANY(p_ids) AND published_at IS NULL
$$;

CREATE FUNCTION ledger.mark_failed(p_id bigint, p_error text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
  UPDATE outbox SET attempts = attempts + 1, last_error = left(p_error, 500)
   WHERE transaction_id = p_id AND published_at IS NULL
$$;

-- The after-commit relay runs inside the money functions and the expiry job, whose
-- database roles must not be able to hide an event that is waiting to be sent (the
-- sweeper's backlog). They mark through this one instead: only events written in the
-- last minute, which their own relay has just published (it publishes within
-- milliseconds of the commit, waiting at most events_publish_timeout_s). Anything older
-- stays pending for the sweeper, which publishes it again; consumers dedupe on the
-- event id.
CREATE FUNCTION ledger.mark_published_after_commit(p_ids bigint[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
  UPDATE outbox SET published_at = clock_timestamp(), attempts = attempts + 1, last_error = NULL
   WHERE transaction_id = ANY(p_ids) AND published_at IS NULL
     AND created_at > clock_timestamp() - interval '1 minute'
$$;
