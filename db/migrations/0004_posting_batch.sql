-- Group commit runs each posting in a subtransaction, where a row's xmin is the
-- subtransaction's id, so the seal (db/schema/20_guards.sql) needs the top-level
-- transaction that created each ledger transaction: pg_current_xact_id() names it even
-- inside a subtransaction. Rows from before this column read NULL, which counts as sealed.
ALTER TABLE ledger.transactions ADD COLUMN created_xact xid8;
ALTER TABLE ledger.transactions ALTER COLUMN created_xact SET DEFAULT pg_current_xact_id();
