-- The hash chain's append, and the two recorded steps of an action, each in ONE round trip
-- (ARCHITECTURE §5.2, §6, §11).
--
-- The hash is unchanged: hash = sha256(prev_hash || canonical(event)). The service still
-- writes the canonical JSON of every event; what it cannot know before the chain head is
-- locked is the event's seq. The canonical document has sorted keys, and "seq" sorts
-- between "payload" and "workspace_id", so the service sends the document in two pieces
-- around it: doc_head ends with '"seq":', doc_tail is ',"workspace_id":"<uuid>"}'.
-- canonical(event) = doc_head || seq::text || doc_tail, byte for byte (a JSON integer is
-- its decimal digits). `audit verify` recomputes every hash in Python from the table.

-- Lock the workspace's chain head (the caller takes it last), number and hash the events,
-- insert them, move the head and send the transaction's one NOTIFY. Returns the new seq.
CREATE FUNCTION fleetward_append_events(
    p_workspace_id uuid,
    p_action_ids uuid[],
    p_event_types text[],
    p_payloads jsonb[],
    p_created_at timestamptz[],
    p_doc_heads bytea[],
    p_doc_tail bytea,
    p_channel text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_hash text;
    v_seqs bigint[] := '{}';
    v_prevs text[] := '{}';
    v_hashes text[] := '{}';
BEGIN
    SELECT last_seq, last_hash INTO v_seq, v_hash
    FROM audit_chain_heads WHERE workspace_id = p_workspace_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workspace % has no audit chain head', p_workspace_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_action_ids, 1), 0) LOOP
        v_seq := v_seq + 1;
        v_seqs := v_seqs || v_seq;
        v_prevs := v_prevs || v_hash;
        v_hash := encode(sha256(convert_to(v_hash, 'UTF8') || p_doc_heads[i]
                                || convert_to(v_seq::text, 'UTF8') || p_doc_tail), 'hex');
        v_hashes := v_hashes || v_hash;
    END LOOP;
    INSERT INTO action_events
        (workspace_id, seq, action_id, event_type, payload, created_at, prev_hash, hash)
    SELECT p_workspace_id, e.seq, e.action_id, e.event_type, e.payload, e.created_at,
           e.prev_hash, e.hash
    FROM unnest(v_seqs, p_action_ids, p_event_types, p_payloads, p_created_at, v_prevs,
                v_hashes) AS e(seq, action_id, event_type, payload, created_at, prev_hash, hash);
    UPDATE audit_chain_heads SET last_seq = v_seq, last_hash = v_hash
    WHERE workspace_id = p_workspace_id;
    PERFORM pg_notify(p_channel, p_workspace_id::text);
    RETURN v_seq;
END $$;

-- §5.2/§5.3/§5.7 step one, called outside a transaction (the statement is its own): take the
-- action's session advisory lock, claim the idempotency key with the pending row and, if
-- the claim won, append its action.pending event. Returns the row, or nothing when the key
-- was already claimed (the lock is still held: the caller releases it). The row's
-- created_at and the event come from the service, which hashed the event before the call.
CREATE FUNCTION fleetward_claim_action(
    p_lock_key bigint,
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
    p_created_at timestamptz,
    p_event_payload jsonb,
    p_event_head bytea,
    p_doc_tail bytea,
    p_channel text
) RETURNS SETOF action_audit_log
LANGUAGE plpgsql AS $$
DECLARE
    v_row action_audit_log;
BEGIN
    PERFORM pg_advisory_lock(p_lock_key);
    INSERT INTO action_audit_log (
        action_id, workspace_id, action_type, scope, target_id, action_params, reason,
        actor_user_id, actor_role, status, can_rollback, rollback_of_action_id, request_id,
        request_fingerprint, policy_version, decision_id, created_at)
    VALUES (p_action_id, p_workspace_id, p_action_type, p_scope, p_target_id, p_params,
            p_reason, p_actor, p_roles, 'pending', p_can_rollback, p_rollback_of,
            p_request_id, p_fingerprint, p_policy_version, p_decision_id, p_created_at)
    ON CONFLICT (workspace_id, actor_user_id, request_id) DO NOTHING
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM fleetward_append_events(
        p_workspace_id, ARRAY[p_action_id], ARRAY['action.pending'], ARRAY[p_event_payload],
        ARRAY[p_created_at], ARRAY[p_event_head], p_doc_tail, p_channel);
    RETURN NEXT v_row;
END $$;

-- §5.2 step two, inside the transaction that ran the effect (after it locked its agents):
-- pending -> in_progress -> completed with the result and the action_targets rows, then
-- the events (the chain head last). Returns the final row.
CREATE FUNCTION fleetward_complete_action(
    p_action_id uuid,
    p_started_at timestamptz,
    p_completed_at timestamptz,
    p_result jsonb,
    p_target_kinds text[],
    p_target_keys text[],
    p_befores jsonb[],
    p_afters jsonb[],
    p_event_action_ids uuid[],
    p_event_types text[],
    p_event_payloads jsonb[],
    p_event_created_at timestamptz[],
    p_event_heads bytea[],
    p_doc_tail bytea,
    p_channel text
) RETURNS SETOF action_audit_log
LANGUAGE plpgsql AS $$
DECLARE
    v_row action_audit_log;
BEGIN
    UPDATE action_audit_log SET status = 'in_progress', started_at = p_started_at
    WHERE action_id = p_action_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'action % does not exist', p_action_id
            USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO action_targets (action_id, target_kind, target_key, before, after)
    SELECT p_action_id, t.kind, t.key, t.before, t.after
    FROM unnest(p_target_kinds, p_target_keys, p_befores, p_afters) AS t(kind, key, before, after);
    UPDATE action_audit_log
    SET status = 'completed', result = p_result, completed_at = p_completed_at
    WHERE action_id = p_action_id
    RETURNING * INTO v_row;
    PERFORM fleetward_append_events(
        v_row.workspace_id, p_event_action_ids, p_event_types, p_event_payloads,
        p_event_created_at, p_event_heads, p_doc_tail, p_channel);
    RETURN NEXT v_row;
END $$;
