-- Bulk usage intake (docs/messages.md#bulk-usage-intake): a usage id posts at most once
-- per tenant, and a repeated id gets the first outcome. A posting is its own record (the
-- usage-id index of migration 0009); a refusal leaves no transaction behind, so the
-- intake keeps the first refusal of each usage id here. A usage id that was refused
-- (insufficient funds, a frozen wallet, a spend limit) stays refused when it comes
-- again, after a top-up too: the metering service sends a new usage id for a new try.
--
-- Written only through ledger.record_usage_refusals() (db/schema/72_usage_refusals.sql),
-- which keeps the first refusal of an id and never changes it.
CREATE TABLE ledger.usage_refusals (
  tenant       text NOT NULL,
  usage_id     text NOT NULL CHECK (length(usage_id) BETWEEN 1 AND 200),
  request_hash text NOT NULL,
  code         text NOT NULL,
  message      text NOT NULL,
  details      jsonb,
  refused_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, usage_id)
);
