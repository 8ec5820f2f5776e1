-- Tamper evidence: a hash chain over the ledger's transactions and their entries.
--
-- One link per ledger transaction, in commit order (created_xact, id), appended by
-- ledger.extend_chain() (db/schema/88_hash_chain.sql) once the transaction is below
-- the horizon of finished database transactions. A link holds the hash of its
-- transaction's canonical form and the chain hash over every link up to it; verify
-- (python -m common.chain verify) recomputes both from the rows. Links are
-- append-only (trigger in 88_hash_chain.sql).
--
-- No foreign key to ledger.transactions, on purpose: a link must outlive a transaction
-- removed out of band, so verify can name what is gone.

CREATE TABLE ledger.chain_links (
  position       bigint PRIMARY KEY CHECK (position > 0),
  transaction_id bigint NOT NULL UNIQUE,
  -- the transaction's place in commit order when it was linked (also in its hash)
  created_xact   xid8 NOT NULL,
  -- its entries' ids, ordered: verify tells an entry added or removed from one changed
  entry_ids      bigint[] NOT NULL,
  row_hash       bytea NOT NULL CHECK (length(row_hash) = 32),
  chain_hash     bytea NOT NULL CHECK (length(chain_hash) = 32),
  linked_at      timestamptz NOT NULL DEFAULT now()
);
