-- Dormancy, second slice (docs/dormancy.md): breakage at dormancy (the balance
-- recognized as revenue through the asset's existing `breakage` account, action
-- dormant_breakage), a `delete` reactivation policy (the wallet is closed at dormancy,
-- for good), and the postings of a period's sweep kept one per traced (product, usage
-- id) group, so reactivation voids every one of them.

ALTER TABLE ledger.transactions DROP CONSTRAINT transactions_action_check;
ALTER TABLE ledger.transactions ADD CONSTRAINT transactions_action_check CHECK (action IN (
  'topup', 'addon', 'bonus', 'usage', 'transfer', 'void', 'allocate', 'reclaim', 'expiry', 'opening_balance',
  'dormant_sweep', 'dormant_breakage'));

ALTER TABLE ledger.dormancy_policies DROP CONSTRAINT dormancy_policies_action_check;
ALTER TABLE ledger.dormancy_policies ADD CONSTRAINT dormancy_policies_action_check
  CHECK (action IN ('mark', 'sweep', 'breakage'));
ALTER TABLE ledger.dormancy_policies DROP CONSTRAINT dormancy_policies_reactivation_check;
-- delete: the wallet is closed at dormancy and never comes back; it must not keep a
-- balance, so its action moves the balance out (sweep or breakage)
ALTER TABLE ledger.dormancy_policies ADD CONSTRAINT dormancy_policies_reactivation_check
  CHECK (reactivation IN ('automatic', 'operator', 'delete') AND (reactivation <> 'delete' OR action <> 'mark'));

-- Every posting that took a period's balance (one per traced (product, usage id)
-- group, and one for the untraced rest), and the void that gave it back at
-- reactivation. dormancy_periods keeps the period's first posting (sweep_id) and the
-- total (swept_amount).
CREATE TABLE ledger.dormancy_postings (
  transaction_id bigint PRIMARY KEY REFERENCES ledger.transactions (id),
  wallet_id      bigint NOT NULL,
  since          timestamptz NOT NULL,
  void_id        bigint REFERENCES ledger.transactions (id),
  FOREIGN KEY (wallet_id, since) REFERENCES ledger.dormancy_periods (wallet_id, since)
);
CREATE INDEX dormancy_postings_of_period ON ledger.dormancy_postings (wallet_id, since);

-- the first slice's sweeps: one posting a period
INSERT INTO ledger.dormancy_postings (transaction_id, wallet_id, since, void_id)
SELECT sweep_id, wallet_id, since, reactivation_id FROM ledger.dormancy_periods WHERE sweep_id IS NOT NULL;
