-- The trace an action was recorded in (docs/architecture.md §9, docs/DECISIONS.md "The
-- trace id on the audit row"): an auditor goes from an audit row to its distributed trace
-- and to the log lines that carry the same trace_id.
--
-- Safe while replicas of the previous version serve: a nullable column without a default
-- is a catalogue change (no table rewrite); the previous claim function keeps working
-- (its rows have no trace id), and this version calls the new one, which takes named
-- arguments and a version suffix so that a later signature change is again a new function
-- rather than a race between replicas. A later migration drops fleetward_claim_action once
-- no replica calls it.

-- 32 lowercase hex digits, not all zero (W3C trace-context's trace-id).
ALTER TABLE action_audit_log
    ADD COLUMN trace_id text
    CONSTRAINT action_audit_log_trace_id_form
        CHECK (trace_id ~ '^[0-9a-f]{32}$' AND trace_id <> repeat('0', 32));

-- The claim of 0003 with the trace id; called with named arguments
-- (SELECT * FROM fleetward_claim_action_v2(p_lock_key => $1, …)).
CREATE FUNCTION fleetward_claim_action_v2(
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
    p_trace_id text,
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
        request_fingerprint, policy_version, decision_id, trace_id, created_at)
    VALUES (p_action_id, p_workspace_id, p_action_type, p_scope, p_target_id, p_params,
            p_reason, p_actor, p_roles, 'pending', p_can_rollback, p_rollback_of,
            p_request_id, p_fingerprint, p_policy_version, p_decision_id, p_trace_id,
            p_created_at)
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

-- 0005 revoked EXECUTE from PUBLIC by default for functions created later; grant this one
-- to the runtime role like the claim it succeeds.
GRANT EXECUTE ON FUNCTION
    fleetward_claim_action_v2(bigint, uuid, uuid, text, text, text, jsonb, text, text, text,
                              boolean, uuid, text, text, text, text, text, timestamptz, jsonb,
                              bytea, bytea, text)
    TO fleetward_runtime;

-- The trace id is written with the row and never changes afterwards, like the rest of what
-- the request said (0005's guard, with trace_id added to its immutable columns).
CREATE OR REPLACE FUNCTION fleetward_audit_log_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'action_audit_log is append-only: DELETE of % refused', OLD.action_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.action_id IS DISTINCT FROM OLD.action_id
       OR NEW.workspace_id IS DISTINCT FROM OLD.workspace_id
       OR NEW.action_type IS DISTINCT FROM OLD.action_type
       OR NEW.scope IS DISTINCT FROM OLD.scope
       OR NEW.target_id IS DISTINCT FROM OLD.target_id
       OR NEW.action_params IS DISTINCT FROM OLD.action_params
       OR NEW.reason IS DISTINCT FROM OLD.reason
       OR NEW.actor_user_id IS DISTINCT FROM OLD.actor_user_id
       OR NEW.actor_role IS DISTINCT FROM OLD.actor_role
       OR NEW.request_id IS DISTINCT FROM OLD.request_id
       OR NEW.request_fingerprint IS DISTINCT FROM OLD.request_fingerprint
       OR NEW.rollback_of_action_id IS DISTINCT FROM OLD.rollback_of_action_id
       OR NEW.can_rollback IS DISTINCT FROM OLD.can_rollback
       OR NEW.policy_version IS DISTINCT FROM OLD.policy_version
       OR NEW.decision_id IS DISTINCT FROM OLD.decision_id
       OR NEW.trace_id IS DISTINCT FROM OLD.trace_id
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'immutable column of action % changed', OLD.action_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status = OLD.status THEN
        IF OLD.status IN ('pending', 'in_progress') THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'action % is final (%): it cannot be changed', OLD.action_id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (OLD.status, NEW.status) = ('completed', 'rolled_back') THEN
        IF NEW.result IS DISTINCT FROM OLD.result
           OR NEW.error_message IS DISTINCT FROM OLD.error_message
           OR NEW.error_details IS DISTINCT FROM OLD.error_details
           OR NEW.started_at IS DISTINCT FROM OLD.started_at
           OR NEW.completed_at IS DISTINCT FROM OLD.completed_at
           OR OLD.rollback_action_id IS NOT NULL
           OR NEW.rollback_action_id IS NULL
           OR NEW.rolled_back_at IS NULL THEN
            RAISE EXCEPTION 'rolling back action % may set only rollback_action_id and '
                'rolled_back_at', OLD.action_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF (OLD.status, NEW.status) IN (
        ('pending', 'in_progress'), ('in_progress', 'completed'), ('in_progress', 'failed'),
        ('pending', 'failed'), ('pending', 'denied')) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'invalid status transition % -> % for action %', OLD.status, NEW.status,
        OLD.action_id USING ERRCODE = 'integrity_constraint_violation';
END $$;
