-- Callers and administrative changes: the caller lookup every request's authorization
-- starts from, and the audited procedures through which wallets and assets change.
--
-- Every administrative change writes one row to ledger.audit_log in the same database
-- transaction, with the actor the function verified (principal, issuer, role, tenant,
-- request id), before, after and reason. The functions' role changes wallets only
-- through these procedures (db/schema/99_grants.sql) and can't change or delete an
-- audit row (append-only: 20_guards.sql).

CREATE FUNCTION ledger.audit(p_actor jsonb, p_action text, p_target text, p_before jsonb, p_after jsonb,
                             p_reason text)
RETURNS bigint LANGUAGE sql SET search_path = ledger, pg_temp AS $$
  INSERT INTO audit_log (actor, action, target, before, after, reason)
  VALUES (coalesce(p_actor, jsonb_build_object('principal', session_user::text)), p_action, p_target,
          p_before, p_after, nullif(p_reason, ''))
  RETURNING id
$$;

-- A verified token's principal and its live grants, one row per grant (one row with a
-- NULL role when it has none). Read once per instance and cached for a short while.
CREATE FUNCTION ledger.caller(p_issuer text, p_subject text)
RETURNS TABLE (principal_id text, kind text, tenant text, owner_id text, status text, principal_rate_limits jsonb,
               role text, scopes text[], boundary text, root_wallet_id bigint, role_rate_limits jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
  SELECT p.id, p.kind, p.tenant, p.owner_id, p.status, p.rate_limits,
         g.role, r.scopes, g.boundary, g.root_wallet_id, r.rate_limits
    FROM principals p
    LEFT JOIN grants g ON g.principal_id = p.id AND g.status = 'active'
    LEFT JOIN roles r ON r.name = g.role
   WHERE p.issuer = p_issuer AND p.subject = p_subject
   ORDER BY g.id
$$;

CREATE FUNCTION ledger.wallet_snapshot(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = ledger, pg_temp AS $$
  SELECT jsonb_build_object(
           'status', w.status, 'credit_limit', w.credit_limit, 'spend_mode', w.spend_mode,
           'spend_limits', coalesce((SELECT jsonb_object_agg(l.period, l.amount ORDER BY l.period)
                                       FROM spend_limits l WHERE l.wallet_id = w.id), '{}'::jsonb))
    FROM wallets w WHERE w.id = p_id
$$;

-- Dual control's rule for credit: a limit that would take the owner's total credit
-- limits in this asset (the other wallets' plus this one's new limit) past the threshold
-- in ledger.access_settings waits for a second operator. Totalled per owner, so that
-- opening many wallets below the threshold does not add up to more credit unseen.
CREATE FUNCTION ledger.credit_needs_second_operator(p_wallet_id bigint, p_owner_id text, p_asset text,
                                                    p_credit_limit bigint)
RETURNS boolean LANGUAGE sql STABLE SET search_path = ledger, pg_temp AS $$
  SELECT p_credit_limit > 0
     AND coalesce((SELECT sum(w.credit_limit) FROM wallets w
                    WHERE w.owner_id = p_owner_id AND w.asset_code = p_asset AND w.kind = 'customer'
                      AND w.id IS DISTINCT FROM p_wallet_id), 0) + p_credit_limit
         > (SELECT dual_control_credit_limit FROM access_settings)
$$;

-- A new customer wallet. A credit limit that needs a second operator starts at zero and
-- waits as a pending change.
CREATE FUNCTION ledger.create_wallet(p_owner_id text, p_asset text, p_model text, p_credit_limit bigint,
                                     p_metadata jsonb, p_parent_id bigint, p_spend_mode text, p_actor jsonb,
                                     OUT wallet_id bigint, OUT pending_change_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_held boolean := credit_needs_second_operator(NULL, p_owner_id, p_asset, p_credit_limit);
BEGIN
  INSERT INTO wallets (owner_id, asset_code, model, credit_limit, metadata, parent_id, spend_mode)
  VALUES (p_owner_id, p_asset, p_model, CASE WHEN v_held THEN 0 ELSE p_credit_limit END,
          coalesce(p_metadata, '{}'::jsonb), p_parent_id, p_spend_mode)
  RETURNING id INTO wallet_id;
  PERFORM audit(p_actor, 'wallet.create', 'wallet:' || wallet_id, NULL,
                wallet_snapshot(wallet_id) || jsonb_build_object('owner_id', p_owner_id, 'asset', p_asset,
                                                                 'model', p_model, 'parent_id', p_parent_id),
                NULL);
  IF v_held THEN
    pending_change_id := request_change(p_actor, 'credit_limit', 'wallet:' || wallet_id,
                                        jsonb_build_object('wallet_id', wallet_id, 'credit_limit', p_credit_limit,
                                                           'from_credit_limit', 0),
                                        'credit limit given at creation');
  END IF;
END $$;

-- Many new wallets in one call, for a bulk migration (common/migrate.py): each made by
-- create_wallet(), audited one by one, with no credit limit. One transaction: a refusal
-- fails them all, and the caller then makes that batch's wallets one at a time to learn
-- which was refused. One round trip a batch instead of one a wallet.
CREATE FUNCTION ledger.create_wallets(p_wallets jsonb, p_actor jsonb)
RETURNS TABLE (item integer, wallet_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_wallet record;
BEGIN
  FOR v_wallet IN
    SELECT (w.ordinality - 1)::integer AS item, w.value AS spec
      FROM jsonb_array_elements(p_wallets) WITH ORDINALITY AS w
     ORDER BY w.ordinality
  LOOP
    item := v_wallet.item;
    SELECT c.wallet_id INTO wallet_id
      FROM create_wallet(v_wallet.spec ->> 'owner_id', v_wallet.spec ->> 'asset', v_wallet.spec ->> 'model', 0,
                         v_wallet.spec -> 'metadata', (v_wallet.spec ->> 'parent_id')::bigint, NULL, p_actor) c;
    RETURN NEXT;
  END LOOP;
END $$;

-- A wallet's status, credit limit, spend mode and spend limits, in one audited change.
-- A system account is never changed, and a closed wallet stays closed and takes no other
-- change either (checked here, under the row's lock, so two changes at once can't reopen
-- one). A raised credit limit
-- that needs a second operator is not applied: it becomes a pending change (the rest of
-- the change applies at once).
CREATE FUNCTION ledger.update_wallet(p_id bigint, p_status text, p_credit_limit bigint, p_spend_mode text,
                                     p_spend_limits jsonb, p_actor jsonb, p_reason text DEFAULT NULL)
RETURNS bigint  -- the pending change's id, when the credit limit waits for approval
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_wallet record;
  v_before jsonb;
  v_limit bigint := p_credit_limit;
  v_pending bigint;
  v_period record;
BEGIN
  SELECT kind, status, owner_id, asset_code, credit_limit INTO v_wallet FROM wallets WHERE id = p_id
     FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('wallet_not_found', jsonb_build_object('wallet_id', p_id));
  END IF;
  IF v_wallet.kind = 'system' THEN
    PERFORM refuse('system_account', jsonb_build_object('wallet_id', p_id));
  END IF;
  -- closed is final: nothing changes on a closed wallet (saying "closed" again changes nothing)
  IF v_wallet.status = 'closed'
     AND (p_status <> 'closed' OR p_credit_limit IS NOT NULL OR p_spend_mode IS NOT NULL
          OR p_spend_limits IS NOT NULL) THEN
    PERFORM refuse('wallet_closed', jsonb_build_object('wallet_id', p_id));
  END IF;
  -- a dormant wallet leaves dormancy only by reactivation (86_dormancy.sql), which gives
  -- back what was swept; no one makes a wallet dormant by hand either
  IF (v_wallet.status = 'dormant' OR p_status = 'dormant') AND p_status IS DISTINCT FROM v_wallet.status
     AND p_status IS NOT NULL THEN
    PERFORM refuse('wallet_dormant', jsonb_build_object('wallet_id', p_id));
  END IF;
  v_before := wallet_snapshot(p_id);
  IF v_limit IS NOT NULL AND v_limit > v_wallet.credit_limit
     AND credit_needs_second_operator(p_id, v_wallet.owner_id, v_wallet.asset_code, v_limit) THEN
    v_pending := request_change(p_actor, 'credit_limit', 'wallet:' || p_id,
                                jsonb_build_object('wallet_id', p_id, 'credit_limit', v_limit,
                                                   'from_credit_limit', v_wallet.credit_limit), p_reason);
    v_limit := NULL;
  END IF;
  UPDATE wallets SET status = coalesce(p_status, status), credit_limit = coalesce(v_limit, credit_limit),
                     spend_mode = coalesce(p_spend_mode, spend_mode), updated_at = now()
   WHERE id = p_id;
  FOR v_period IN SELECT key AS period, value AS amount FROM jsonb_each(coalesce(p_spend_limits, '{}'::jsonb))
                   ORDER BY key
  LOOP
    IF jsonb_typeof(v_period.amount) = 'null' THEN
      DELETE FROM spend_limits WHERE wallet_id = p_id AND period = v_period.period;
    ELSE
      INSERT INTO spend_limits (wallet_id, period, amount) VALUES (p_id, v_period.period, (v_period.amount)::bigint)
      ON CONFLICT (wallet_id, period) DO UPDATE SET amount = excluded.amount, updated_at = now();
    END IF;
  END LOOP;
  IF wallet_snapshot(p_id) IS DISTINCT FROM v_before THEN
    PERFORM audit(p_actor, 'wallet.update', 'wallet:' || p_id, v_before, wallet_snapshot(p_id), p_reason);
  END IF;
  RETURN v_pending;
END $$;

-- Dual control --------------------------------------------------------------------

CREATE FUNCTION ledger.request_change(p_actor jsonb, p_kind text, p_target text, p_change jsonb, p_reason text)
RETURNS bigint LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_id bigint;
BEGIN
  INSERT INTO pending_changes (kind, target, change, reason, requested_by)
  VALUES (p_kind, p_target, p_change, nullif(p_reason, ''), p_actor)
  RETURNING id INTO v_id;
  PERFORM audit(p_actor, 'change.request', 'change:' || v_id, NULL,
                jsonb_build_object('kind', p_kind, 'target', p_target, 'change', p_change), p_reason);
  RETURN v_id;
END $$;

-- A second operator approves or rejects a pending change; an approved one applies in
-- the same transaction. The requester can't decide their own change
-- (pending_changes_second_person).
CREATE FUNCTION ledger.decide_change(p_id bigint, p_approve boolean, p_actor jsonb, p_reason text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_change record;
  v_before jsonb;
BEGIN
  SELECT * INTO v_change FROM pending_changes WHERE id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('change_not_found', jsonb_build_object('change_id', p_id));
  END IF;
  IF v_change.status <> 'pending' THEN
    PERFORM refuse('change_decided', jsonb_build_object('change_id', p_id, 'status', v_change.status));
  END IF;
  IF v_change.requested_by->>'principal' = p_actor->>'principal' THEN
    PERFORM refuse('second_operator_required', jsonb_build_object('change_id', p_id));
  END IF;
  UPDATE pending_changes SET status = CASE WHEN p_approve THEN 'approved' ELSE 'rejected' END,
                             decided_by = p_actor, decided_at = now()
   WHERE id = p_id;
  PERFORM audit(p_actor, CASE WHEN p_approve THEN 'change.approve' ELSE 'change.reject' END, 'change:' || p_id,
                jsonb_build_object('status', 'pending'), jsonb_build_object('requested_by', v_change.requested_by),
                p_reason);
  IF p_approve AND v_change.kind = 'credit_limit' THEN
    -- approved as asked: a limit changed since (lowered, say) makes the request stale
    PERFORM 1 FROM wallets WHERE id = (v_change.change->>'wallet_id')::bigint
       AND credit_limit = (v_change.change->>'from_credit_limit')::bigint FOR NO KEY UPDATE;
    IF NOT FOUND THEN
      PERFORM refuse('change_stale', jsonb_build_object('change_id', p_id,
                     'wallet_id', (v_change.change->>'wallet_id')::bigint));
    END IF;
    v_before := wallet_snapshot((v_change.change->>'wallet_id')::bigint);
    UPDATE wallets SET credit_limit = (v_change.change->>'credit_limit')::bigint, updated_at = now()
     WHERE id = (v_change.change->>'wallet_id')::bigint;
    PERFORM audit(p_actor, 'wallet.update', v_change.target, v_before,
                  wallet_snapshot((v_change.change->>'wallet_id')::bigint),
                  format('change %s requested by %s', p_id, v_change.requested_by->>'principal'));
  ELSIF p_approve AND v_change.kind = 'grant' THEN
    UPDATE grants SET status = 'active', updated_at = now()
     WHERE id = (v_change.change->>'grant_id')::bigint AND status = 'pending';
    PERFORM audit(p_actor, 'grant.activate', v_change.target, jsonb_build_object('status', 'pending'),
                  jsonb_build_object('status', 'active'),
                  format('change %s requested by %s', p_id, v_change.requested_by->>'principal'));
  ELSIF v_change.kind = 'grant' THEN
    UPDATE grants SET status = 'revoked', updated_at = now()
     WHERE id = (v_change.change->>'grant_id')::bigint AND status = 'pending';
  END IF;
  RETURN jsonb_build_object('id', p_id, 'status', CASE WHEN p_approve THEN 'approved' ELSE 'rejected' END);
END $$;

-- Principals, grants and roles -----------------------------------------------------
--
-- What the operators' API (functions/access) changes, each change one audited call.
-- The functions' role has no INSERT or UPDATE on these tables (99_grants.sql): these
-- procedures are the only way a caller's rights change. A principal's grants are
-- audited under the principal ('principal:<id>'), so one target reads its whole story.

CREATE FUNCTION ledger.principal_snapshot(p_id text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = ledger, pg_temp AS $$
  SELECT jsonb_build_object('id', p.id, 'issuer', p.issuer, 'subject', p.subject, 'kind', p.kind,
                            'tenant', p.tenant, 'owner_id', p.owner_id, 'status', p.status,
                            'rate_limits', p.rate_limits, 'description', p.description)
    FROM principals p WHERE p.id = p_id
$$;

CREATE FUNCTION ledger.grant_snapshot(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = ledger, pg_temp AS $$
  SELECT jsonb_build_object('id', g.id, 'principal_id', g.principal_id, 'role', g.role, 'boundary', g.boundary,
                            'root_wallet_id', g.root_wallet_id, 'status', g.status)
    FROM grants g WHERE g.id = p_id
$$;

CREATE FUNCTION ledger.create_principal(p_id text, p_issuer text, p_subject text, p_kind text, p_tenant text,
                                        p_owner_id text, p_description text, p_rate_limits jsonb, p_actor jsonb,
                                        p_reason text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_after jsonb;
BEGIN
  INSERT INTO principals (id, issuer, subject, kind, tenant, owner_id, description, rate_limits)
  VALUES (p_id, p_issuer, p_subject, p_kind, p_tenant, p_owner_id, coalesce(p_description, ''), p_rate_limits)
  ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN  -- the id, or the token identity (issuer, subject), is someone's already
    PERFORM refuse('principal_exists', jsonb_build_object(
      'principal_id', p_id, 'issuer', p_issuer, 'subject', p_subject,
      'existing', (SELECT id FROM principals WHERE id = p_id OR (issuer = p_issuer AND subject = p_subject) LIMIT 1)));
  END IF;
  v_after := principal_snapshot(p_id);
  PERFORM audit(p_actor, 'principal.create', 'principal:' || p_id, NULL, v_after, p_reason);
  RETURN v_after;
END $$;

-- A principal's status (active, disabled), description and rate-limit override, in one
-- audited change. NULL leaves a field as it is; a JSON null rate_limits removes the
-- override (the roles' limits apply again).
CREATE FUNCTION ledger.update_principal(p_id text, p_status text, p_description text, p_rate_limits jsonb,
                                        p_actor jsonb, p_reason text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_before jsonb;
  v_after jsonb;
BEGIN
  PERFORM 1 FROM principals WHERE id = p_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('principal_not_found', jsonb_build_object('principal_id', p_id));
  END IF;
  v_before := principal_snapshot(p_id);
  UPDATE principals
     SET status = coalesce(p_status, status),
         description = coalesce(p_description, description),
         rate_limits = CASE WHEN p_rate_limits IS NULL THEN rate_limits
                            WHEN jsonb_typeof(p_rate_limits) = 'null' THEN NULL
                            ELSE p_rate_limits END,
         updated_at = now()
   WHERE id = p_id;
  v_after := principal_snapshot(p_id);
  IF v_after IS DISTINCT FROM v_before THEN
    PERFORM audit(p_actor, 'principal.update', 'principal:' || p_id, v_before, v_after, p_reason);
  END IF;
  RETURN v_after;
END $$;

-- A role for a principal within a boundary. A grant that needs a second operator (over
-- every wallet, or of a role holding a scope ledger.access_settings names) is written
-- as pending, with a pending change that ledger.decide_change() activates;
-- until then ledger.caller() leaves it out.
CREATE FUNCTION ledger.grant_role(p_principal_id text, p_role text, p_boundary text, p_root_wallet_id bigint,
                                  p_actor jsonb, p_reason text DEFAULT NULL,
                                  OUT grant_id bigint, OUT pending_change_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_owner_id text;
  v_after jsonb;
  v_needs_approval boolean;
BEGIN
  SELECT owner_id INTO v_owner_id FROM principals WHERE id = p_principal_id FOR KEY SHARE;
  IF NOT FOUND THEN
    PERFORM refuse('principal_not_found', jsonb_build_object('principal_id', p_principal_id));
  END IF;
  PERFORM 1 FROM roles WHERE name = p_role;
  IF NOT FOUND THEN
    PERFORM refuse('unknown_role', jsonb_build_object('role', p_role));
  END IF;
  IF p_boundary = 'own' AND v_owner_id IS NULL THEN  -- `own` would cover nothing
    PERFORM refuse('principal_without_owner', jsonb_build_object('principal_id', p_principal_id));
  END IF;
  IF p_root_wallet_id IS NOT NULL THEN
    PERFORM 1 FROM wallets WHERE id = p_root_wallet_id AND kind = 'customer';
    IF NOT FOUND THEN
      PERFORM refuse('root_wallet_not_found', jsonb_build_object('root_wallet_id', p_root_wallet_id));
    END IF;
  END IF;
  -- over every wallet, or a role holding a scope ledger.access_settings names
  v_needs_approval := p_boundary = 'all' OR EXISTS (
    SELECT 1 FROM roles r, access_settings a WHERE r.name = p_role AND r.scopes && a.dual_control_scopes);
  INSERT INTO grants (principal_id, role, boundary, root_wallet_id, status)
  VALUES (p_principal_id, p_role, p_boundary, p_root_wallet_id,
          CASE WHEN v_needs_approval THEN 'pending' ELSE 'active' END)
  ON CONFLICT DO NOTHING
  RETURNING id INTO grant_id;
  IF grant_id IS NULL THEN  -- the same grant is live (active or pending) already
    PERFORM refuse('grant_exists', jsonb_build_object(
      'principal_id', p_principal_id, 'role', p_role, 'boundary', p_boundary, 'root_wallet_id', p_root_wallet_id,
      'grant_id', (SELECT id FROM grants WHERE principal_id = p_principal_id AND role = p_role
                      AND boundary = p_boundary AND root_wallet_id IS NOT DISTINCT FROM p_root_wallet_id
                      AND status <> 'revoked' LIMIT 1)));
  END IF;
  v_after := grant_snapshot(grant_id);
  PERFORM audit(p_actor, 'grant.create', 'principal:' || p_principal_id, NULL, v_after, p_reason);
  IF v_needs_approval THEN
    pending_change_id := request_change(p_actor, 'grant', 'principal:' || p_principal_id,
                                        jsonb_build_object('grant_id', grant_id) || (v_after - 'id' - 'status'),
                                        p_reason);
  END IF;
END $$;

-- A live grant revoked. A pending one is not: its change is rejected instead, by
-- another operator, so that the record says who decided.
CREATE FUNCTION ledger.revoke_grant(p_grant_id bigint, p_actor jsonb, p_reason text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_grant record;
  v_before jsonb;
  v_after jsonb;
BEGIN
  SELECT * INTO v_grant FROM grants WHERE id = p_grant_id FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('grant_not_found', jsonb_build_object('grant_id', p_grant_id));
  END IF;
  IF v_grant.status = 'revoked' THEN
    PERFORM refuse('grant_revoked', jsonb_build_object('grant_id', p_grant_id));
  END IF;
  IF v_grant.status = 'pending' THEN
    PERFORM refuse('grant_pending', jsonb_build_object(
      'grant_id', p_grant_id,
      'change_id', (SELECT id FROM pending_changes WHERE kind = 'grant' AND status = 'pending'
                       AND (change->>'grant_id')::bigint = p_grant_id LIMIT 1)));
  END IF;
  v_before := grant_snapshot(p_grant_id);
  UPDATE grants SET status = 'revoked', updated_at = now() WHERE id = p_grant_id;
  v_after := grant_snapshot(p_grant_id);
  PERFORM audit(p_actor, 'grant.revoke', 'principal:' || v_grant.principal_id, v_before, v_after, p_reason);
  RETURN v_after;
END $$;

-- A role's rate limits per action class ({"money": {"per_second": 50, "burst": 100}}),
-- checked for shape by the service (common/auth/commands.py).
CREATE FUNCTION ledger.set_role_rate_limits(p_role text, p_rate_limits jsonb, p_actor jsonb,
                                            p_reason text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_before jsonb;
BEGIN
  SELECT rate_limits INTO v_before FROM roles WHERE name = p_role FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('role_not_found', jsonb_build_object('role', p_role));
  END IF;
  UPDATE roles SET rate_limits = p_rate_limits, updated_at = now() WHERE name = p_role;
  IF p_rate_limits IS DISTINCT FROM v_before THEN
    PERFORM audit(p_actor, 'role.update', 'role:' || p_role, jsonb_build_object('rate_limits', v_before),
                  jsonb_build_object('rate_limits', p_rate_limits), p_reason);
  END IF;
  RETURN jsonb_build_object('name', p_role, 'rate_limits', p_rate_limits);
END $$;

-- The first operators of a fresh deployment, registered by the database's owner (no
-- function's role may call this): a principal with the operator role over every wallet,
-- active at once, audited with the owner's actor. Two are needed, since every later
-- operator's grant waits for a second operator's approval; once two active principals
-- hold grants admin over every wallet, this refuses (operators_exist) and operators add
-- operators through the access function.
CREATE FUNCTION ledger.bootstrap_operator(p_id text, p_issuer text, p_subject text, p_tenant text, p_actor jsonb)
RETURNS bigint LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_grant bigint;
  v_operators text[];
BEGIN
  LOCK TABLE grants IN SHARE ROW EXCLUSIVE MODE;  -- two bootstraps at once count each other
  v_operators := ARRAY(
    SELECT p.id FROM principals p
      JOIN grants g ON g.principal_id = p.id AND g.status = 'active' AND g.boundary = 'all'
      JOIN roles r ON r.name = g.role AND 'grants_admin' = ANY (r.scopes)
     WHERE p.status = 'active' ORDER BY p.id);
  IF cardinality(v_operators) >= 2 THEN
    PERFORM refuse('operators_exist', jsonb_build_object('operators', to_jsonb(v_operators)));
  END IF;
  PERFORM create_principal(p_id, p_issuer, p_subject, 'operator', p_tenant, NULL, 'a first operator', NULL,
                           p_actor, 'bootstrap of the first operators');
  INSERT INTO grants (principal_id, role, boundary, status) VALUES (p_id, 'operator', 'all', 'active')
  RETURNING id INTO v_grant;
  PERFORM audit(p_actor, 'grant.create', 'principal:' || p_id, NULL, grant_snapshot(v_grant),
                'bootstrap of the first operators');
  RETURN v_grant;
END $$;
