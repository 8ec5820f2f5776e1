-- Trees: enterprise and reseller wallets.
--
-- A wallet may have a parent of the same asset and model (enterprise or reseller); the
-- root is the enterprise's pool or the reseller's wholesale wallet, and every wallet
-- records its root and its path from the root, set here when it is created and never
-- changed. A personal wallet is a tree of one. Money moves down a tree by `allocate`
-- and up by `reclaim` (70_posting.sql checks the edge). Roll-up balances are summed on
-- read over the path index: no parent row is written when a member acts.

CREATE FUNCTION ledger.place_in_tree() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_parent record;
BEGIN
  IF NEW.parent_id IS NULL THEN
    NEW.root_id := NEW.id;
    NEW.path := ARRAY[NEW.id];
    IF NEW.model IN ('enterprise', 'reseller') THEN
      NEW.spend_mode := coalesce(NEW.spend_mode, 'allocated');
    END IF;
    RETURN NEW;
  END IF;
  SELECT kind, status, root_id, path INTO v_parent FROM ledger.wallets WHERE id = NEW.parent_id;
  IF FOUND AND v_parent.status <> 'active' THEN
    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'parent_not_active',
      DETAIL = jsonb_build_object('parent_id', NEW.parent_id, 'status', v_parent.status)::text;
  END IF;
  NEW.root_id := coalesce(v_parent.root_id, NEW.parent_id);  -- a missing parent fails the foreign key
  NEW.path := coalesce(v_parent.path, ARRAY[]::bigint[]) || NEW.id;
  RETURN NEW;
END $$;
CREATE TRIGGER wallets_place_in_tree BEFORE INSERT ON ledger.wallets
  FOR EACH ROW EXECUTE FUNCTION ledger.place_in_tree();

CREATE FUNCTION ledger.refuse_tree_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'wallet_identity_fixed',
    DETAIL = format('wallet %s: its place in a tree never changes', OLD.id);
END $$;
CREATE TRIGGER wallets_tree_fixed BEFORE UPDATE OF parent_id, root_id, path ON ledger.wallets
  FOR EACH ROW
  WHEN (OLD.parent_id IS DISTINCT FROM NEW.parent_id OR OLD.root_id IS DISTINCT FROM NEW.root_id
        OR OLD.path IS DISTINCT FROM NEW.path)
  EXECUTE FUNCTION ledger.refuse_tree_change();
