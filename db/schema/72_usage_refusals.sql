-- Bulk usage intake's refusals (migration 0011): the first refusal of each usage id in
-- its tenant, kept so that the id, sent again, gets that same outcome.
--
-- Each item of p_batch is {tenant, usage_id, request_hash, code, message, details}. The
-- first refusal of an id stands: a later one (another copy of the batch that raced this
-- one and met another state of the wallet) changes nothing. The answer is the refusal
-- that stands for each id of the batch, the caller's own or the one before it, so every
-- copy reports the same outcome.
--
-- One race stays, and it is the intake's documented rule rather than a gap: two copies
-- of a usage that run at once can see the wallet differently (a top-up commits between
-- them), one posting and the other refused. The posting wins: the intake looks for a
-- posting before a refusal, so from then on the id answers with its posting.
CREATE FUNCTION ledger.record_usage_refusals(p_batch jsonb)
RETURNS TABLE (usage_id text, request_hash text, code text, message text, details jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
BEGIN
  INSERT INTO usage_refusals (tenant, usage_id, request_hash, code, message, details)
  SELECT r.tenant, r.usage_id, r.request_hash, r.code, r.message, r.details
    FROM jsonb_to_recordset(p_batch) AS r(tenant text, usage_id text, request_hash text, code text,
                                          message text, details jsonb)
   ORDER BY r.tenant, r.usage_id  -- one order for every copy: two batches can't deadlock here
  ON CONFLICT (tenant, usage_id) DO NOTHING;
  RETURN QUERY
    SELECT u.usage_id, u.request_hash, u.code, u.message, u.details
      FROM usage_refusals u
      JOIN jsonb_to_recordset(p_batch) AS r(tenant text, usage_id text)
        ON (u.tenant, u.usage_id) = (r.tenant, r.usage_id);
END $$;
