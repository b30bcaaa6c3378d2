-- The one-transaction form of an action's recorded life (docs/architecture.md §5.2,
-- docs/DECISIONS.md "One transaction for in-database effects").
--
-- An action whose effect is rows in PostgreSQL (every kind that does not declare an
-- external effect) no longer commits a pending row before it acts: its effect, its audit
-- row (inserted final), its action_targets and its chain events commit together, in one
-- transaction. A failure or crash leaves nothing of it; a failed row is written afterwards,
-- in its own statement. A concurrent duplicate of the request waits on the idempotency
-- key's transaction advisory lock (taken by the service with BEGIN) until the first ends,
-- then finds the key taken at its insert and answers the first outcome.
--
-- Safe while replicas of the previous version serve: nothing here changes what their
-- functions do or what their rows may be. Their two-step form (fleetward_claim_action_v2,
-- fleetward_complete_action) stays, and so does every kind that declares an external effect.

-- The chain append of the one-transaction form, from the hashed documents alone: each
-- event's action, type, time and payload are read from the document the service hashed,
-- so the payload is serialised once (by the service) and what is stored is, as jsonb,
-- what was hashed. The document must write the action id and time as the verifier does
-- (lowercase, UTC with microseconds), name exactly this workspace and seq, have no other
-- key, be an event of one of p_actions (the actions this transaction records), and be of
-- the type its payload's status says (action.<status>) about that very action. Bytes that
-- are valid JSON but not canonical are stored and then reported by `audit verify` as a
-- break, never hidden. Called only by fleetward_record_action_v1 (not granted to the
-- runtime role).
CREATE FUNCTION fleetward_append_documents_v1(
    p_workspace_id uuid,
    p_actions uuid[],
    p_doc_heads bytea[],
    p_doc_tail bytea,
    p_channel text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_hash text;
    v_doc bytea;
    v_json jsonb;
    v_action uuid;
    v_type text;
    v_at timestamptz;
    v_count int := coalesce(array_length(p_doc_heads, 1), 0);
BEGIN
    IF v_count = 0 OR array_ndims(p_doc_heads) <> 1 OR array_lower(p_doc_heads, 1) <> 1 THEN
        RAISE EXCEPTION 'append: the documents must be a one-dimensional array from 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT last_seq, last_hash INTO v_seq, v_hash
    FROM audit_chain_heads WHERE workspace_id = p_workspace_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workspace % has no audit chain head', p_workspace_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    FOR i IN 1 .. v_count LOOP
        v_seq := v_seq + 1;
        v_doc := p_doc_heads[i] || convert_to(v_seq::text, 'UTF8') || p_doc_tail;
        v_json := convert_from(v_doc, 'UTF8')::jsonb;
        v_action := (v_json->>'action_id')::uuid;
        v_type := v_json->>'event_type';
        v_at := (v_json->>'created_at')::timestamptz;
        IF v_action IS NULL OR v_type IS NULL OR v_at IS NULL
           OR jsonb_typeof(v_json->'payload') IS DISTINCT FROM 'object'
           OR NOT coalesce(v_action = ANY(p_actions), false)
           OR v_json->'payload'->>'action_id' IS DISTINCT FROM v_action::text
           OR v_json->'payload'->>'workspace_id' IS DISTINCT FROM p_workspace_id::text
           OR v_type IS DISTINCT FROM 'action.' || (v_json->'payload'->>'status')
           OR (v_json - 'payload') IS DISTINCT FROM jsonb_build_object(
                  'action_id', v_action::text,
                  'created_at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                  'event_type', v_type,
                  'seq', v_seq,
                  'workspace_id', p_workspace_id::text) THEN
            RAISE EXCEPTION 'event % of the append: the document is not an event of this '
                'transaction''s actions in this workspace at this seq', i
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        -- An event's time is now, give or take the clock skew between the service and the
        -- database: a time in the future would hide how long an event has gone unsigned.
        IF abs(EXTRACT(EPOCH FROM v_at - clock_timestamp())) > 300 THEN
            RAISE EXCEPTION 'event % of the append: its time % is not now (more than 5 minutes '
                'from the database clock)', i, v_at
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO action_events
            (workspace_id, seq, action_id, event_type, payload, created_at, prev_hash, hash)
        VALUES (p_workspace_id, v_seq, v_action, v_type, v_json->'payload', v_at, v_hash,
                encode(sha256(convert_to(v_hash, 'UTF8') || v_doc), 'hex'))
        RETURNING hash INTO v_hash;
    END LOOP;
    UPDATE audit_chain_heads SET last_seq = v_seq, last_hash = v_hash
    WHERE workspace_id = p_workspace_id;
    PERFORM pg_notify(p_channel, p_workspace_id::text);
    RETURN v_seq;
END $$;

-- The record of an action in one call: the row, inserted in its final status (completed,
-- or failed after its transaction was rolled back), its action_targets and its events
-- (the chain head last). Returns the row, or nothing when the idempotency key is already
-- taken (then it wrote nothing: the caller rolls back and answers the first outcome).
-- Called with named arguments (SELECT * FROM fleetward_record_action_v1(p_action_id => $1, …)).
CREATE FUNCTION fleetward_record_action_v1(
    p_action_id uuid,
    p_workspace_id uuid,
    p_action_type text,
    p_scope text,
    p_target_id text,
    p_params jsonb,
    p_reason text,
    p_actor text,
    p_roles text,
    p_can_rollback boolean,
    p_rollback_of uuid,
    p_request_id text,
    p_fingerprint text,
    p_policy_version text,
    p_decision_id text,
    p_trace_id text,
    p_status text,
    p_created_at timestamptz,
    p_started_at timestamptz,
    p_completed_at timestamptz,
    p_result jsonb,
    p_error_message text,
    p_error_details jsonb,
    p_target_kinds text[],
    p_target_keys text[],
    p_befores jsonb[],
    p_afters jsonb[],
    p_event_heads bytea[],
    p_doc_tail bytea,
    p_channel text
) RETURNS SETOF action_audit_log
LANGUAGE plpgsql AS $$
DECLARE
    v_row action_audit_log;
    v_actions uuid[];
BEGIN
    -- Only the two final statuses an action reaches by acting (denied rows are inserted by
    -- their own statement; rolled_back is an update of a completed row).
    IF p_status IS NULL OR p_status NOT IN ('completed', 'failed') THEN
        RAISE EXCEPTION 'record: an action is recorded completed or failed, not %', p_status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO action_audit_log (
        action_id, workspace_id, action_type, scope, target_id, action_params, reason,
        actor_user_id, actor_role, status, can_rollback, rollback_of_action_id, request_id,
        request_fingerprint, policy_version, decision_id, trace_id, created_at, started_at,
        completed_at, result, error_message, error_details)
    VALUES (p_action_id, p_workspace_id, p_action_type, p_scope, p_target_id, p_params,
            p_reason, p_actor, p_roles, p_status, p_can_rollback, p_rollback_of,
            p_request_id, p_fingerprint, p_policy_version, p_decision_id, p_trace_id,
            p_created_at, p_started_at, p_completed_at, p_result, p_error_message,
            p_error_details)
    ON CONFLICT (workspace_id, actor_user_id, request_id) DO NOTHING
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- Only a completed action has targets, and only the one this call inserted.
    IF coalesce(array_length(p_target_keys, 1), 0) > 0 THEN
        IF p_status <> 'completed' THEN
            RAISE EXCEPTION 'record: a failed action has no action_targets'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO action_targets (action_id, target_kind, target_key, before, after)
        SELECT p_action_id, t.kind, t.key, t.before, t.after
        FROM unnest(p_target_kinds, p_target_keys, p_befores, p_afters)
            AS t(kind, key, before, after);
    END IF;
    -- Events of this action, and of the original it rolled back in this transaction.
    v_actions := ARRAY[p_action_id];
    IF p_status = 'completed' AND p_rollback_of IS NOT NULL AND EXISTS (
           SELECT FROM action_audit_log
           WHERE action_id = p_rollback_of AND workspace_id = p_workspace_id
             AND status = 'rolled_back' AND rollback_action_id = p_action_id) THEN
        v_actions := v_actions || p_rollback_of;
    END IF;
    PERFORM fleetward_append_documents_v1(
        p_workspace_id, v_actions, p_event_heads, p_doc_tail, p_channel);
    RETURN NEXT v_row;
END $$;

-- Like fleetward_complete_action, they write action_targets and the chain, which the
-- runtime role may not: the owner's rights, search_path pinned (pg_temp last).
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'fleetward_append_documents_v1(uuid, uuid[], bytea[], bytea, text)',
        'fleetward_record_action_v1(uuid, uuid, text, text, text, jsonb, text, text, text, '
            'boolean, uuid, text, text, text, text, text, text, timestamptz, timestamptz, '
            'timestamptz, jsonb, text, jsonb, text[], text[], jsonb[], jsonb[], bytea[], '
            'bytea, text)']
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       fn, current_schema());
    END LOOP;
END $$;
GRANT EXECUTE ON FUNCTION
    fleetward_record_action_v1(uuid, uuid, text, text, text, jsonb, text, text, text,
                               boolean, uuid, text, text, text, text, text, text, timestamptz,
                               timestamptz, timestamptz, jsonb, text, jsonb, text[], text[],
                               jsonb[], jsonb[], bytea[], bytea, text)
    TO fleetward_runtime;

-- action_targets are written only while their action completes: its row is in_progress
-- (the two-step form), or it is the completed row this very transaction inserted (the
-- one-transaction form; xmin is the inserting transaction, and no savepoint is involved).
-- A finished action's before/after still cannot be added to afterwards.
CREATE OR REPLACE FUNCTION fleetward_targets_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_action uuid;
BEGIN
    SELECT n.action_id INTO v_action
    FROM (SELECT DISTINCT action_id FROM new_rows) AS n
    LEFT JOIN action_audit_log AS a USING (action_id)
    WHERE a.status IS DISTINCT FROM 'in_progress'
      AND NOT coalesce(a.status = 'completed' AND a.xmin = pg_current_xact_id()::xid, false)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'action_targets of action % may only be written while it completes',
            v_action USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

-- A rollback marks its original rolled_back (rollback_action_id = the rollback) inside its
-- effect, before the rollback's own row is inserted at the end of the same transaction: the
-- reference is checked at COMMIT. A catalogue-only change (no rewrite, no validation scan).
ALTER TABLE action_audit_log
    ALTER CONSTRAINT action_audit_log_rollback_action_id_fkey DEFERRABLE INITIALLY DEFERRED;
