-- Roles and privileges, as they are now.
--
-- ledger_access is the role of the operators' access function alone (below).
--
-- ledger_app is the role of the other functions (internet-facing and scheduled alike). It
-- reads the ledger, moves money only through ledger.commit_posting() and
-- ledger.commit_postings(), and creates and changes wallets, assets, principals, grants
-- and roles only through the audited procedures (75_access.sql): no plain INSERT or
-- UPDATE on any of them, and the audit log is insert-only through them (it can read
-- it, never change it).
--
-- erp_exporter is the ERP export's own role. Moving the export cursor, recording,
-- marking and replaying batches, and opening streams belong to the scheduled export
-- alone: a compromised HTTP function must not be able to move the cursor over
-- transactions that were never sent. erp_exporter reads the ledger and changes the
-- export's state only through the erp.* functions; it cannot post money. Its login
-- (the exporter's IAM user in Google Cloud, ledger_erp locally) is granted
-- erp_exporter the way the functions' user is granted ledger_app.
--
-- Everything is revoked first and granted again, so a grant removed from this file is
-- gone from the database too. Functions are created afresh by every apply and start
-- with EXECUTE for PUBLIC, which the revoke takes away: a function is callable only by
-- the roles named here. Grants to ledger_app come before those to erp_exporter, the
-- order they were first given in (pg_dump prints privileges in that order).

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
    CREATE ROLE ledger_app NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'erp_exporter') THEN
    CREATE ROLE erp_exporter NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_access') THEN
    CREATE ROLE ledger_access NOLOGIN;
  END IF;
END $$;

REVOKE ALL ON SCHEMA ledger, erp FROM PUBLIC, ledger_app, erp_exporter, ledger_access;
REVOKE ALL ON ALL TABLES IN SCHEMA ledger, erp FROM PUBLIC, ledger_app, erp_exporter, ledger_access;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ledger, erp FROM PUBLIC, ledger_app, erp_exporter, ledger_access;

-- The functions: ledger_app ------------------------------------------------------

GRANT USAGE ON SCHEMA ledger, erp TO ledger_app;
GRANT SELECT ON
  ledger.assets, ledger.wallets, ledger.transactions, ledger.entries, ledger.outbox, ledger.outbox_events,
  ledger.spend_limits, ledger.spend_counters, ledger.spend_charges,
  ledger.lots, ledger.lot_movements, ledger.lot_extensions,
  ledger.audit_log,
  erp.charts, erp.cursors, erp.batches
  TO ledger_app;
GRANT EXECUTE ON FUNCTION
  ledger.commit_posting(text, text, text, text, bigint, bigint, bigint, bigint[], bigint[],
    text, text, text, text, bigint, jsonb, timestamptz, timestamptz, bigint, text, jsonb),
  ledger.commit_postings(jsonb),
  ledger.transaction_json(bigint),
  ledger.iso_utc(timestamptz),
  ledger.create_asset(text, smallint, text, jsonb),
  ledger.mark_published(bigint[]),
  ledger.mark_failed(bigint, text),
  ledger.expire_lots(integer, timestamptz, bigint),
  ledger.extend_lot(text, bigint, timestamptz, text, text, jsonb),
  ledger.period_start(text, timestamptz),
  ledger.caller(text, text),
  ledger.create_wallet(text, text, text, bigint, jsonb, bigint, text, jsonb),
  ledger.update_wallet(bigint, text, bigint, text, jsonb, jsonb, text)
  TO ledger_app;
-- The hash chain (88_hash_chain.sql): the outbox sweeper's tick extends it, and
-- `python -m common.chain verify` reads it with the rows it covers.
GRANT SELECT ON ledger.chain_links TO ledger_app;
GRANT EXECUTE ON FUNCTION ledger.extend_chain(integer) TO ledger_app;

-- Read-only: `python -m common.reconcile` checks every stored posting against its rule.
GRANT EXECUTE ON FUNCTION
  ledger.posting_rule_breach(text, text, bigint, bigint, bigint, jsonb, bigint, bigint[], bigint[], boolean)
  TO ledger_app;

-- The operators' access function: ledger_access -----------------------------------
--
-- Principals, grants, roles' limits and the decisions on pending changes change only
-- through this role's procedures, and no other function's role has them: a compromised
-- money or wallets function can't grant itself a role, approve a change or lift a
-- caller's limits. (What needs a second operator is in ledger.access_settings, which
-- only the owner writes.)

GRANT USAGE ON SCHEMA ledger TO ledger_access;
GRANT SELECT ON
  ledger.roles, ledger.principals, ledger.grants, ledger.audit_log, ledger.pending_changes,
  ledger.access_settings
  TO ledger_access;
GRANT EXECUTE ON FUNCTION
  ledger.iso_utc(timestamptz),
  ledger.caller(text, text),
  ledger.decide_change(bigint, boolean, jsonb, text),
  ledger.create_principal(text, text, text, text, text, text, text, jsonb, jsonb, text),
  ledger.update_principal(text, text, text, jsonb, jsonb, text),
  ledger.grant_role(text, text, text, bigint, jsonb, text),
  ledger.revoke_grant(bigint, jsonb, text),
  ledger.set_role_rate_limits(text, jsonb, jsonb, text)
  TO ledger_access;

-- The ERP export: erp_exporter ---------------------------------------------------

GRANT USAGE ON SCHEMA ledger, erp TO erp_exporter;
GRANT SELECT ON
  ledger.assets, ledger.wallets, ledger.transactions, ledger.entries,
  ledger.spend_charges, ledger.lots, ledger.lot_movements,
  erp.charts, erp.cursors, erp.batches
  TO erp_exporter;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA erp TO erp_exporter;
GRANT EXECUTE ON FUNCTION ledger.iso_utc(timestamptz) TO erp_exporter;
