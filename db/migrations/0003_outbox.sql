-- The transactional outbox: one row per ledger transaction, written by the posting's own
-- database transaction (the trigger and the event view are in db/schema/80_outbox.sql
-- and db/schema/30_read_views.sql).

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
