-- Sessions: how long a session may sit idle inside an open transaction.
--
-- An open transaction holds the ledger's horizon back (pg_snapshot_xmin): the hash
-- chain (88_hash_chain.sql) and the ERP export (90_erp_export.sql) link or export
-- nothing created after it began, and it may hold wallet locks that postings queue
-- behind. Postgres ends a session idle in a transaction for longer than this, whoever
-- logged in (a function's login, an operator's psql, the owner): no login can pin the
-- horizon for longer. Two minutes is far beyond any transaction of the ledger's own,
-- each a single round trip or a few. It applies to sessions opened after it is set.
-- The database's owner sets it (the local stack's owner owns the database); in Google
-- Cloud the instance's flag of the same name sets it too (infra/terraform/database.tf),
-- whoever owns the database there.
-- (Only the database's owner may set it: anyone else leaves it to that flag.)
DO $$
BEGIN
  IF pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE') THEN
    EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L', current_database(), '120s');
  END IF;
END $$;
