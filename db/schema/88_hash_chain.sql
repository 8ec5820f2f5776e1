-- Tamper evidence: the hash chain over ledger transactions and their entries
-- (docs/tamper-evidence.md; the links' table is migration 0008).
--
-- What is hashed: each transaction's canonical text (ledger.chain_text below), made of
-- the columns that never legitimately change - all of them, since the rows are
-- append-only: id, created_xact, tenant, idempotency_key, request_hash, action,
-- asset_code, amount, wallet_id, counterparty_wallet_id, external_ref, usage_id,
-- product, description, voids_transaction_id, metadata, actor, effective_at,
-- created_at; then each of its entries, ordered by id: id, transaction_id, wallet_id,
-- asset_code, amount, balance_after, created_at. Each value is its text form (times as
-- UTC with microseconds), written as <characters>:<text>, or ~ for NULL, so no value
-- can run into the next. A column added later joins the hash only with a new version
-- of this text (its first line names the version). common/hash_chain.py builds the
-- same text from the rows with built-in casts alone, so that verifying never trusts a
-- function the schema's owner could redefine.
--
-- Commit order: (created_xact, id). created_xact is the id of the database transaction
-- that created the row, the order in which those transactions took their ids, not the
-- order they committed in; but the chain only links rows whose creating transaction
-- is older than the oldest one still running (pg_snapshot_xmin), so every row it
-- could ever place before a linked one is already committed and visible: the set
-- below that horizon is final, and a posting still in flight is linked once it ends.
-- Rows created in one database transaction (group commit) share created_xact and
-- follow their ids; rows from before the column existed were given created_xact 1
-- (migration 0005) and come first, by id.

CREATE FUNCTION ledger.chain_field(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN p_value IS NULL THEN '~' ELSE length(p_value) || ':' || p_value END
$$;

CREATE FUNCTION ledger.chain_utc(p_at timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION ledger.chain_text(p_transaction_id bigint) RETURNS text
LANGUAGE sql STABLE SET search_path = ledger, pg_temp AS $$
  SELECT 'ledger-chain-v1' || E'\nT ' || concat_ws(',',
           chain_field(t.id::text), chain_field(t.created_xact::text), chain_field(t.tenant),
           chain_field(t.idempotency_key), chain_field(t.request_hash), chain_field(t.action),
           chain_field(t.asset_code), chain_field(t.amount::text), chain_field(t.wallet_id::text),
           chain_field(t.counterparty_wallet_id::text), chain_field(t.external_ref), chain_field(t.usage_id),
           chain_field(t.product), chain_field(t.description), chain_field(t.voids_transaction_id::text),
           chain_field(t.metadata::text), chain_field(t.actor::text), chain_field(chain_utc(t.effective_at)),
           chain_field(chain_utc(t.created_at)))
         || coalesce((SELECT string_agg(E'\nE ' || concat_ws(',',
                                chain_field(e.id::text), chain_field(e.transaction_id::text),
                                chain_field(e.wallet_id::text), chain_field(e.asset_code), chain_field(e.amount::text),
                                chain_field(e.balance_after::text), chain_field(chain_utc(e.created_at))),
                              '' ORDER BY e.id)
                        FROM entries e WHERE e.transaction_id = t.id), '')
    FROM transactions t WHERE t.id = p_transaction_id
$$;

-- Link the next transactions below the horizon, at most p_limit of them, in commit
-- order. Extenders serialize on an advisory lock, taken without waiting: a second one
-- returns at once (busy) and links nothing. Nothing else takes that lock, and the
-- ledger's own tables are only read, so a posting never waits for the chain.
-- chain_hash(n) = sha256(chain_hash(n-1) || row_hash(n)), from 32 zero bytes.
CREATE FUNCTION ledger.extend_chain(p_limit integer)
RETURNS TABLE (linked integer, busy boolean, head_position bigint, head_transaction_id bigint, head_hash text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_head chain_links%ROWTYPE;
  v_chain bytea;
  v_row bytea;
  v_linked integer := 0;
  v_next record;
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('ledger.extend_chain')) THEN
    SELECT * INTO v_head FROM chain_links ORDER BY position DESC LIMIT 1;
    RETURN QUERY SELECT 0, true, v_head.position, v_head.transaction_id, encode(v_head.chain_hash, 'hex');
    RETURN;
  END IF;
  SELECT * INTO v_head FROM chain_links ORDER BY position DESC LIMIT 1;
  v_chain := coalesce(v_head.chain_hash, decode(repeat('00', 32), 'hex'));
  FOR v_next IN
    SELECT t.id, t.created_xact,
           (SELECT coalesce(array_agg(e.id ORDER BY e.id), '{}') FROM entries e WHERE e.transaction_id = t.id)
             AS entry_ids
      FROM transactions t
     WHERE (t.created_xact, t.id) > (coalesce(v_head.created_xact, '0'::xid8), coalesce(v_head.transaction_id, 0))
       AND t.created_xact < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY t.created_xact, t.id
     -- a batch stays small whatever is asked: the lock is held for one batch
     LIMIT least(greatest(coalesce(p_limit, 1), 1), 10000)
  LOOP
    v_row := sha256(convert_to(chain_text(v_next.id), 'UTF8'));
    v_chain := sha256(v_chain || v_row);
    v_head.position := coalesce(v_head.position, 0) + 1;
    v_head.transaction_id := v_next.id;
    v_head.chain_hash := v_chain;
    INSERT INTO chain_links (position, transaction_id, created_xact, entry_ids, row_hash, chain_hash)
    VALUES (v_head.position, v_next.id, v_next.created_xact, v_next.entry_ids, v_row, v_chain);
    v_linked := v_linked + 1;
  END LOOP;
  RETURN QUERY SELECT v_linked, false, v_head.position, v_head.transaction_id, encode(v_head.chain_hash, 'hex');
END $$;

-- How far the chain trails the ledger: the next transaction to link in commit order
-- (the first after the head), how long ago it was created, and whether it waits
-- behind the horizon, that is, a database transaction older than it is still open
-- (`extend` links nothing past it, however often it runs, so "caught up with the
-- horizon" alone would hide a chain that stands still). One index lookup on
-- (created_xact, id): the sweeper's tick and `python -m common.chain extend` report it.
CREATE FUNCTION ledger.chain_lag()
RETURNS TABLE (next_transaction_id bigint, waiting_s double precision, held_back boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_head chain_links%ROWTYPE;
BEGIN
  SELECT * INTO v_head FROM chain_links ORDER BY position DESC LIMIT 1;
  RETURN QUERY
    SELECT t.id, greatest(extract(epoch FROM clock_timestamp() - t.created_at), 0)::double precision,
           t.created_xact >= pg_snapshot_xmin(pg_current_snapshot())
      FROM transactions t
     WHERE (t.created_xact, t.id) > (coalesce(v_head.created_xact, '0'::xid8), coalesce(v_head.transaction_id, 0))
     ORDER BY t.created_xact, t.id
     LIMIT 1;
END $$;

-- Links are append-only, like the ledger they cover (20_guards.sql).
CREATE TRIGGER chain_links_append_only BEFORE UPDATE OR DELETE ON ledger.chain_links
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER chain_links_no_truncate BEFORE TRUNCATE ON ledger.chain_links
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
