-- The ERP export's own database role.
--
-- ledger_app is the role of the internet-facing functions. Moving the export cursor,
-- recording, marking and replaying batches, and opening streams belong to the
-- scheduled export alone: a compromised HTTP function must not be able to move the
-- cursor over transactions that were never sent. erp_exporter reads the ledger and
-- changes the export's state only through the erp.* functions; it cannot post money.
-- Its login (the exporter's IAM user in Google Cloud, ledger_erp locally) is granted
-- erp_exporter the way the functions' user is granted ledger_app.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'erp_exporter') THEN
    CREATE ROLE erp_exporter NOLOGIN;
  END IF;
END $$;

REVOKE EXECUTE ON FUNCTION
  erp.record_batch(text, text, xid8, bigint, xid8, bigint, text, integer, integer, jsonb),
  erp.mark_delivered(text, jsonb),
  erp.mark_failed(text, text, interval, integer),
  erp.replay(text),
  erp.open_stream(text),
  erp.save_chart(text, jsonb)
FROM ledger_app;

GRANT USAGE ON SCHEMA ledger, erp TO erp_exporter;
GRANT SELECT ON ledger.transactions, ledger.entries, ledger.wallets, ledger.assets TO erp_exporter;
GRANT SELECT ON ALL TABLES IN SCHEMA erp TO erp_exporter;
GRANT EXECUTE ON FUNCTION ledger.iso_utc(timestamptz) TO erp_exporter;
GRANT EXECUTE ON FUNCTION
  erp.record_batch(text, text, xid8, bigint, xid8, bigint, text, integer, integer, jsonb),
  erp.mark_delivered(text, jsonb),
  erp.mark_failed(text, text, interval, integer),
  erp.replay(text),
  erp.open_stream(text),
  erp.save_chart(text, jsonb)
TO erp_exporter;
