-- The transactional outbox: every ledger transaction's event is written by the same
-- database transaction that posts it, so an event exists exactly when its posting does
-- (a refused or rolled-back posting leaves none) and nothing is lost when Pub/Sub is
-- down. A relay publishes pending rows and marks them; `published_at IS NULL` is the
-- backlog, and a row that keeps failing shows its attempts and last error.
--
-- A statement-level trigger on entries writes the outbox row of every transaction in
-- the INSERT (all legs of a transaction arrive in one INSERT: they must balance per
-- statement). The row holds the event id; the event's content is the transaction and
-- its entries, which are append-only, and the legs' wallets (owner and model, which the
-- functions cannot change), so `ledger.outbox_events` renders it when it is read. That
-- keeps the posting's own cost to one small insert: rendering the JSON inside the
-- posting cost a quarter more database CPU per posting (bench/: pgbench calling
-- ledger.commit_posting()).

CREATE TABLE ledger.outbox (
  transaction_id bigint PRIMARY KEY REFERENCES ledger.transactions (id),
  created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  published_at   timestamptz,
  attempts       integer NOT NULL DEFAULT 0,
  last_error     text
);
-- the sweep takes rows that failed least first, so a few that keep failing cannot
-- hold back the rest
CREATE INDEX outbox_pending ON ledger.outbox (attempts, transaction_id) WHERE published_at IS NULL;

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

-- Each event as the relay publishes it and consumers receive it.
CREATE VIEW ledger.outbox_events AS
SELECT o.transaction_id, o.created_at, o.published_at, o.attempts, o.last_error,
       jsonb_build_object(
         'event_id', t.id::text,
         'transaction_id', t.id,
         'action', t.action,
         'asset', t.asset_code,
         'amount', t.amount,
         'wallet_id', t.wallet_id,
         'counterparty_wallet_id', t.counterparty_wallet_id,
         'usage_id', t.usage_id,
         'product', t.product,
         'external_ref', t.external_ref,
         'description', t.description,
         'voids_transaction_id', t.voids_transaction_id,
         'idempotency_key', t.idempotency_key,
         'metadata', t.metadata,
         'effective_at', ledger.iso_utc(t.effective_at),
         'created_at', ledger.iso_utc(t.created_at),
         'legs', (SELECT jsonb_agg(jsonb_build_object(
                    'wallet_id', e.wallet_id, 'owner_id', w.owner_id, 'model', w.model,
                    'system_role', w.system_role, 'amount', e.amount) ORDER BY e.id)
                    FROM ledger.entries e JOIN ledger.wallets w ON w.id = e.wallet_id
                   WHERE e.transaction_id = t.id)
       ) AS event
  FROM ledger.outbox o JOIN ledger.transactions t ON t.id = o.transaction_id;

-- What an event says must not change after it is written: it is rendered on read from
-- transactions and entries (append-only) and from each leg's wallet, whose identity
-- (owner, model, kind, role, asset) is therefore fixed once the wallet exists.
CREATE FUNCTION ledger.refuse_identity_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'wallet_identity_fixed',
    DETAIL = format('wallet %s: owner, model, kind, role and asset never change', OLD.id);
END $$;
CREATE TRIGGER wallets_identity_fixed BEFORE UPDATE OF owner_id, model, kind, system_role, asset_code
  ON ledger.wallets FOR EACH ROW
  WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id OR OLD.model IS DISTINCT FROM NEW.model
        OR OLD.kind IS DISTINCT FROM NEW.kind OR OLD.system_role IS DISTINCT FROM NEW.system_role
        OR OLD.asset_code IS DISTINCT FROM NEW.asset_code)
  EXECUTE FUNCTION ledger.refuse_identity_change();

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

REVOKE ALL ON FUNCTION ledger.mark_published(bigint[]), ledger.mark_failed(bigint, text) FROM PUBLIC;
GRANT SELECT ON ledger.outbox, ledger.outbox_events TO ledger_app;
GRANT EXECUTE ON FUNCTION ledger.mark_published(bigint[]), ledger.mark_failed(bigint, text) TO ledger_app;
