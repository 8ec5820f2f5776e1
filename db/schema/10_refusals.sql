-- Refusal codes: how the database says no to a posting or an admin call.
--
-- A refusal is SQLSTATE P0001 with the code as MESSAGE and a JSON DETAIL, raised through
-- ledger.refuse() (the guards raise theirs directly, with a text DETAIL). The one list of
-- codes, with the error class each maps to, is DATABASE_REFUSALS in common/errors.py:
-- tests/unit/test_refusals.py reads every code this tree can raise and fails when the
-- database raises a code the list lacks, or the list names one the database never raises.

CREATE FUNCTION ledger.refuse(p_code text, p_detail jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = p_code, DETAIL = p_detail::text;
END $$;
