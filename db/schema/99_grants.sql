-- Roles and privileges, as they are now: one role per kind of function, each with only
-- what that kind uses, so a compromised function can do what its kind does and nothing
-- else (docs/database.md#roles).
--
--   ledger_poster        the money functions (topup, usage, transfer, void, addon, bonus,
--                        allocate, reclaim): post through commit_posting(s), read
--   ledger_wallet_admin  the wallets function: the audited admin procedures, read
--   ledger_relay         the outbox sweeper: mark events published or failed
--   ledger_jobs          the lot expiry and dormancy jobs: expire_lots, dormancy_run
--   ledger_auditor       reconciliation: read the ledger and the export's state
--   ledger_reconciler    the daily reconciliation (functions/ledger_reconcile): read what
--                        the incremental checks read, move their checkpoint
--   ledger_operator      the operator's CLI (common.ops, common.reconcile): the relay's,
--                        the export's and the auditor's rights, and the lot expiry
--   erp_exporter         the ERP export and its reconciliation (90_erp_export.sql)
--   ledger_access        the operators' access function (75_access.sql)
--   ledger_automation    the automation function: a poster, plus the rules' decisions
--                        (78_automation.sql)
--   ledger_messages      the actions function (balance actions as messages): a poster
--
-- None of them has a plain INSERT, UPDATE, DELETE or TRUNCATE on any table: money moves
-- only through commit_posting(s) and expire_lots, and wallets, assets, credit limits,
-- statuses, spend modes, principals and grants change only through the audited
-- SECURITY DEFINER procedures. None of them owns anything, so none can ALTER a table or
-- switch a trigger off: only the owner (the migrations' login) can, and no function or
-- operator logs in as it. Each function's login (its IAM user in Google Cloud) names
-- its kind in functions/<name>/deploy.json (infra/functions.py maps it to a role here).
--
-- Everything is revoked first and granted again, so a grant removed from this file is
-- gone from the database too. Functions are created afresh by every apply and start
-- with EXECUTE for PUBLIC, which the revoke takes away: a function is callable only by
-- the roles named here. To let a role call a new function, add it to that role's
-- section.

DO $$
DECLARE
  v_role text;
BEGIN
  FOREACH v_role IN ARRAY ARRAY['ledger_poster', 'ledger_wallet_admin', 'ledger_relay', 'ledger_jobs',
                                'ledger_auditor', 'ledger_operator', 'erp_exporter', 'ledger_access',
                                'ledger_automation', 'ledger_messages', 'ledger_reconciler'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
    END IF;
  END LOOP;
  -- ledger_app, the one role every function once shared, is retired: whatever it was
  -- granted goes, and a login still in it can do nothing here.
  FOREACH v_role IN ARRAY ARRAY['PUBLIC', 'ledger_app', 'ledger_poster', 'ledger_wallet_admin', 'ledger_relay',
                                'ledger_jobs', 'ledger_auditor', 'ledger_operator', 'erp_exporter',
                                'ledger_access', 'ledger_automation', 'ledger_messages', 'ledger_reconciler'] LOOP
    IF v_role = 'PUBLIC' OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
      EXECUTE format('REVOKE ALL ON SCHEMA ledger, erp FROM %s', v_role);
      EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA ledger, erp FROM %s', v_role);
      EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA ledger, erp FROM %s', v_role);
      EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ledger, erp FROM %s', v_role);
    END IF;
  END LOOP;
END $$;

-- The money functions: ledger_poster ---------------------------------------------
--
-- Reads what an action's authorization and answer need; posts only through
-- commit_posting(s); marks events of the last minute published, as its after-commit
-- relay does (80_outbox.sql: it could mark another posting's fresh event too, keeping
-- that event off Pub/Sub; the ERP export and the chain read transactions, not events).
-- It can't mark an older event, create an asset or change a wallet.

GRANT USAGE ON SCHEMA ledger TO ledger_poster;
GRANT SELECT ON
  ledger.assets, ledger.wallets, ledger.transactions, ledger.entries, ledger.outbox, ledger.outbox_events,
  ledger.spend_limits, ledger.spend_counters, ledger.spend_charges,
  ledger.lots, ledger.lot_movements, ledger.lot_extensions, ledger.usage_refusals
  TO ledger_poster;
GRANT EXECUTE ON FUNCTION
  ledger.commit_posting(text, text, text, text, bigint, bigint, bigint, bigint[], bigint[],
    text, text, text, text, bigint, jsonb, timestamptz, timestamptz, bigint, text, jsonb),
  ledger.commit_postings(jsonb),
  ledger.record_usage_refusals(jsonb),
  ledger.transaction_json(bigint),
  ledger.iso_utc(timestamptz),
  ledger.period_start(text, timestamptz),
  ledger.caller(text, text),
  ledger.mark_published_after_commit(bigint[])
  TO ledger_poster;
-- A system account's balance, as every wallet read gives it (32_balance_checkpoints.sql).
GRANT EXECUTE ON FUNCTION ledger.system_balance(bigint) TO ledger_poster, ledger_wallet_admin, ledger_auditor;

-- The wallets function: ledger_wallet_admin --------------------------------------
--
-- Reads, and changes wallets, assets and lots only through the audited procedures. It
-- cannot post money or mark events.

GRANT USAGE ON SCHEMA ledger TO ledger_wallet_admin;
GRANT SELECT ON
  ledger.assets, ledger.wallets, ledger.transactions, ledger.entries,
  ledger.spend_limits, ledger.spend_counters, ledger.spend_charges,
  ledger.lots, ledger.lot_movements, ledger.lot_extensions
  TO ledger_wallet_admin;
GRANT EXECUTE ON FUNCTION
  ledger.transaction_json(bigint),
  ledger.iso_utc(timestamptz),
  ledger.period_start(text, timestamptz),
  ledger.caller(text, text),
  ledger.create_wallet(text, text, text, bigint, jsonb, bigint, text, jsonb),
  ledger.create_wallets(jsonb, jsonb),
  ledger.update_wallet(bigint, text, bigint, text, jsonb, jsonb, text),
  ledger.create_asset(text, smallint, text, jsonb),
  ledger.extend_lot(text, bigint, timestamptz, text, text, jsonb)
  TO ledger_wallet_admin;
-- Automation rules (77_automation_rules.sql): read, and changed only through their
-- audited procedures; the automation function reads them with its own role.
GRANT SELECT ON ledger.automation_rules TO ledger_wallet_admin;
GRANT EXECUTE ON FUNCTION
  ledger.rule_json(bigint),
  ledger.create_rule(text, text, bigint, bigint, bigint, text, text, bigint[], jsonb, jsonb),
  ledger.change_rule(bigint, text, text, jsonb)
  TO ledger_wallet_admin;

-- The outbox sweeper: ledger_relay -----------------------------------------------

GRANT USAGE ON SCHEMA ledger TO ledger_relay;
GRANT SELECT ON ledger.outbox, ledger.outbox_events TO ledger_relay;
GRANT EXECUTE ON FUNCTION
  ledger.iso_utc(timestamptz),  -- the events' view calls it, as whoever reads it
  ledger.mark_published(bigint[]),
  ledger.mark_failed(bigint, text)
  TO ledger_relay;
-- The hash chain (88_hash_chain.sql): the sweeper's tick extends it after its sweep.
GRANT SELECT ON ledger.chain_links TO ledger_relay;
GRANT EXECUTE ON FUNCTION ledger.extend_chain(integer), ledger.chain_lag() TO ledger_relay;
-- The balance checkpoints (32_balance_checkpoints.sql): the same tick advances them.
-- No role writes them but through this function.
GRANT SELECT ON ledger.balance_horizon, ledger.balance_checkpoints TO ledger_relay;
GRANT EXECUTE ON FUNCTION ledger.advance_balance_checkpoints(integer) TO ledger_relay;
-- The same tick logs when the ledger last reconciled clean (the reconciliation
-- checkpoint's updated_at, 33_reconciliation_checkpoint.sql), for the alert that fires
-- when the daily run stops coming or keeps finding violations.
GRANT SELECT ON ledger.reconciliation_checkpoint TO ledger_relay;

-- The lot expiry job: ledger_jobs ------------------------------------------------
--
-- Expires lots (each expiry a posting made inside expire_lots), and publishes their
-- events after commit as the money functions do.

GRANT USAGE ON SCHEMA ledger TO ledger_jobs;
-- transactions and entries: the deferred guard that every transaction has entries
-- (20_guards.sql) runs at commit, as the committing role
GRANT SELECT ON ledger.transactions, ledger.entries, ledger.outbox, ledger.outbox_events TO ledger_jobs;
GRANT EXECUTE ON FUNCTION
  ledger.expire_lots(integer, timestamptz, bigint),
  ledger.iso_utc(timestamptz),
  ledger.mark_published_after_commit(bigint[])
  TO ledger_jobs;
-- The dormancy job (86_dormancy.sql) runs as the same role: a job of the database that
-- posts only inside its own procedures, like the lot expiry.
GRANT SELECT ON ledger.dormancy_policies, ledger.dormancy_periods, ledger.dormancy_postings TO ledger_jobs;
GRANT EXECUTE ON FUNCTION ledger.dormancy_run(integer, bigint), ledger.dormancy_reactivate(bigint, jsonb)
  TO ledger_jobs;

-- Reconciliation: ledger_auditor -------------------------------------------------

GRANT USAGE ON SCHEMA ledger, erp TO ledger_auditor;
GRANT SELECT ON
  ledger.assets, ledger.wallets, ledger.transactions, ledger.entries, ledger.outbox, ledger.outbox_events,
  ledger.spend_limits, ledger.spend_counters, ledger.spend_charges,
  ledger.lots, ledger.lot_movements, ledger.lot_extensions,
  ledger.audit_log, ledger.automation_rules,
  erp.charts, erp.cursors, erp.batches, erp.reconciled_sums
  TO ledger_auditor;
GRANT EXECUTE ON FUNCTION ledger.iso_utc(timestamptz) TO ledger_auditor;
-- `python -m common.reconcile` checks every stored posting against its rule
-- (65_posting_rules.sql), and `python -m common.chain verify` reads the chain's links
-- with the rows they cover (88_hash_chain.sql).
GRANT EXECUTE ON FUNCTION
  ledger.posting_rule_breach(text, text, bigint, bigint, bigint, jsonb, bigint, bigint[], bigint[], boolean)
  TO ledger_auditor;
GRANT SELECT ON ledger.chain_links TO ledger_auditor;
-- and checks every balance checkpoint against the entries it sums (32_balance_checkpoints.sql)
GRANT SELECT ON ledger.balance_horizon, ledger.balance_checkpoints TO ledger_auditor;
GRANT EXECUTE ON FUNCTION ledger.chain_lag() TO ledger_auditor;
-- and reads the incremental reconciliation's checkpoint and totals (33_reconciliation_checkpoint.sql)
GRANT SELECT ON ledger.reconciliation_checkpoint, ledger.reconciliation_asset_totals,
  ledger.reconciliation_system_totals TO ledger_auditor;

-- The daily reconciliation: ledger_reconciler ------------------------------------
--
-- functions/ledger_reconcile runs `python -m common.reconcile`'s default, incremental
-- run (common/adapters/incremental_reconciliation.py) once a day: it reads the tables
-- those checks read, checks each new transaction against its rule, and moves the
-- checkpoint only through the function that sums the range itself. Not the auditor's
-- rights: no export state, outbox, audit log or chain, which the checks never read;
-- and, like every role here, no write on any table.

GRANT USAGE ON SCHEMA ledger TO ledger_reconciler;
GRANT SELECT ON
  ledger.assets, ledger.wallets, ledger.transactions, ledger.entries,
  ledger.spend_counters, ledger.spend_charges, ledger.lots, ledger.lot_movements,
  ledger.balance_horizon, ledger.balance_checkpoints,
  ledger.reconciliation_checkpoint, ledger.reconciliation_asset_totals, ledger.reconciliation_system_totals
  TO ledger_reconciler;
GRANT EXECUTE ON FUNCTION
  ledger.posting_rule_breach(text, text, bigint, bigint, bigint, jsonb, bigint, bigint[], bigint[], boolean),
  ledger.advance_reconciliation(xid8, bigint)
  TO ledger_reconciler;

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
--
-- Moving the export cursor, recording, marking and replaying batches, and opening
-- streams belong to the scheduled export alone: a compromised HTTP function must not be
-- able to move the cursor over transactions that were never sent. erp_exporter reads
-- the ledger and changes the export's state only through the erp.* functions; it
-- cannot post money.

GRANT USAGE ON SCHEMA ledger, erp TO erp_exporter;
GRANT SELECT ON
  ledger.assets, ledger.wallets, ledger.transactions, ledger.entries,
  ledger.spend_charges, ledger.lots, ledger.lot_movements,
  erp.charts, erp.cursors, erp.batches, erp.reconciled_sums
  TO erp_exporter;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA erp TO erp_exporter;
GRANT EXECUTE ON FUNCTION ledger.iso_utc(timestamptz) TO erp_exporter;

-- The automation function: ledger_automation ------------------------------------
--
-- Posts auto top-ups and recurring allocations as the money functions do (a member of
-- ledger_poster), reads the rules and their firings, and records firings only through
-- automation_fire and automation_record (78_automation.sql). It can't change a rule:
-- rules change through the wallets function's audited procedures.

GRANT ledger_poster TO ledger_automation;
GRANT SELECT ON ledger.automation_rules, ledger.automation_firings TO ledger_automation;
GRANT EXECUTE ON FUNCTION
  ledger.automation_fire(bigint, text),
  ledger.automation_record(bigint, text, text, bigint, jsonb)
  TO ledger_automation;

-- The actions function: ledger_messages ------------------------------------------
--
-- Posts balance actions from messages as the money functions do, and nothing more (a
-- member of ledger_poster). A role of its own because its login is its own in Google
-- Cloud: the one account with publisher rights on the results and dead-letter topics.

GRANT ledger_poster TO ledger_messages;

-- The operator's CLI: ledger_operator ---------------------------------------------
--
-- What `make ops` does (status, sweep, export, parked, replay, reconcile) and
-- `python -m common.reconcile`: the relay's, the exporter's and the auditor's rights by
-- membership. It is not the owner: it can't post (beyond expiring due lots), change a
-- wallet, ALTER a table or switch a trigger off.

GRANT ledger_relay, erp_exporter, ledger_auditor TO ledger_operator;
-- `python -m common.reconcile` moves the reconciliation checkpoint after a clean run,
-- only through the function that sums the range itself (33_reconciliation_checkpoint.sql)
GRANT EXECUTE ON FUNCTION ledger.advance_reconciliation(xid8, bigint) TO ledger_operator;
-- `python -m common.dormancy policy list|set`: the policies, read and set through their
-- audited procedure (86_dormancy.sql)
GRANT SELECT ON ledger.dormancy_policies TO ledger_operator;
GRANT EXECUTE ON FUNCTION
  ledger.dormancy_set_policy(text, text, interval, interval, text, text, jsonb)
  TO ledger_operator;
-- `python -m common.ops expire`: the lot expiry job run by hand (a day of many due lots,
-- docs/background-jobs.md); it posts only what the procedure finds due, as the job does
GRANT EXECUTE ON FUNCTION ledger.expire_lots(integer, timestamptz, bigint) TO ledger_operator;
