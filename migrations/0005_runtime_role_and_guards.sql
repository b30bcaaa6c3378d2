-- Least privilege and the guards the schema still lacked (docs/architecture.md §6,
-- "Against a stolen database credential"; docs/DECISIONS.md "Two database roles").
--
-- The tables, triggers and functions belong to the role that runs `migrate` (the owner).
-- The services connect as a login role that is a member of the group role
-- fleetward_runtime, which may only read, insert, and update the columns the status
-- machine and the effects change. It owns nothing, so it cannot ALTER a table, disable a
-- trigger, TRUNCATE or DELETE; the hash chain and action_targets are written only through
-- the functions below, which run with the owner's rights (SECURITY DEFINER) and a pinned
-- search_path.

-- The group role. Created here when the migrating role may create roles; otherwise a
-- database administrator creates it first: CREATE ROLE fleetward_runtime NOLOGIN.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleetward_runtime') THEN
        BEGIN
            CREATE ROLE fleetward_runtime NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;  -- created concurrently
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'the role fleetward_runtime does not exist and % may not create it',
                    current_user
                    USING HINT = 'as an administrator: CREATE ROLE fleetward_runtime NOLOGIN; '
                                 'then GRANT fleetward_runtime TO <the services'' login role>';
        END;
    END IF;
END $$;

-- Nobody but the owner creates objects in the schema (PostgreSQL 15 already says so;
-- older servers let every role create there). Only the schema's owner may change it.
DO $$
BEGIN
    IF pg_has_role((SELECT nspowner FROM pg_namespace WHERE nspname = current_schema()),
                   'USAGE') THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    END IF;
END $$;

-- What the runtime role may do, table by table.
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO fleetward_runtime', current_schema());
END $$;
REVOKE ALL ON workspaces, departments, agents, budgets, action_audit_log, action_targets,
    action_events, audit_chain_heads, schema_migrations FROM PUBLIC, fleetward_runtime;
GRANT SELECT ON workspaces, departments, agents, budgets, action_audit_log, action_targets,
    action_events, audit_chain_heads, schema_migrations TO fleetward_runtime;
-- Inventory (import-agents, seed-demo): new workspaces, departments and agents, renames,
-- moves and retirement; never a delete.
GRANT INSERT ON workspaces, departments, agents, budgets, action_audit_log TO fleetward_runtime;
GRANT UPDATE (name) ON workspaces, departments TO fleetward_runtime;
-- The effects: control state of agents, budgets.
GRANT UPDATE (department_id, status, paused_until, generation, restart_requested_at,
              updated_at, last_action_id) ON agents TO fleetward_runtime;
GRANT UPDATE (monthly_limit_cents, last_action_id, updated_at) ON budgets TO fleetward_runtime;
-- The status machine (fleetward_audit_log_guard says which transitions may set which).
GRANT UPDATE (status, result, error_message, error_details, started_at, completed_at,
              rolled_back_at, rollback_action_id) ON action_audit_log TO fleetward_runtime;
-- action_events, audit_chain_heads and action_targets: no INSERT or UPDATE at all; the
-- functions below write them.

-- The append checks that what it hashes is what it stores: the document the service sent
-- (its canonical JSON, cut around the seq) must say, in jsonb's text, exactly the workspace, seq,
-- action, event type, time and payload of the row inserted. Otherwise a caller could store
-- one payload under the hash of another, and no later check could tell which one is true.
CREATE OR REPLACE FUNCTION fleetward_append_events(
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
    v_doc bytea;
    v_seqs bigint[] := '{}';
    v_prevs text[] := '{}';
    v_hashes text[] := '{}';
    v_count int := coalesce(array_length(p_action_ids, 1), 0);
BEGIN
    -- Plain one-dimensional arrays of one length, indexed from 1: the rows inserted below
    -- (by unnest, which ignores bounds and flattens) are then exactly the ones checked.
    IF v_count = 0
       OR array_ndims(p_action_ids) <> 1 OR array_lower(p_action_ids, 1) <> 1
       OR array_ndims(p_event_types) <> 1 OR array_lower(p_event_types, 1) <> 1
       OR array_length(p_event_types, 1) <> v_count
       OR array_ndims(p_payloads) <> 1 OR array_lower(p_payloads, 1) <> 1
       OR array_length(p_payloads, 1) <> v_count
       OR array_ndims(p_created_at) <> 1 OR array_lower(p_created_at, 1) <> 1
       OR array_length(p_created_at, 1) <> v_count
       OR array_ndims(p_doc_heads) <> 1 OR array_lower(p_doc_heads, 1) <> 1
       OR array_length(p_doc_heads, 1) <> v_count THEN
        RAISE EXCEPTION 'append: the event arrays must be one-dimensional, from 1, of one length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT last_seq, last_hash INTO v_seq, v_hash
    FROM audit_chain_heads WHERE workspace_id = p_workspace_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workspace % has no audit chain head', p_workspace_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    FOR i IN 1 .. v_count LOOP
        -- An event's time is now, give or take the clock skew between the service and the
        -- database: a time in the future would hide how long an event has gone unsigned.
        IF p_created_at[i] IS NULL
           OR abs(EXTRACT(EPOCH FROM p_created_at[i] - clock_timestamp())) > 300 THEN
            RAISE EXCEPTION 'event % of the append: its time % is not now (more than 5 minutes '
                'from the database clock)', i, p_created_at[i]
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_seq := v_seq + 1;
        v_doc := p_doc_heads[i] || convert_to(v_seq::text, 'UTF8') || p_doc_tail;
        -- Compared as jsonb's text, which keeps numbers as written: 1 and 1.0 are equal
        -- jsonb values but hash differently.
        IF (convert_from(v_doc, 'UTF8')::jsonb)::text IS DISTINCT FROM jsonb_build_object(
               'action_id', p_action_ids[i]::text,
               'created_at', to_char(p_created_at[i] AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'event_type', p_event_types[i],
               'payload', p_payloads[i],
               'seq', v_seq,
               'workspace_id', p_workspace_id::text)::text THEN
            RAISE EXCEPTION 'event % of the append: the hashed document is not the stored event', i
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        v_seqs := v_seqs || v_seq;
        v_prevs := v_prevs || v_hash;
        v_hash := encode(sha256(convert_to(v_hash, 'UTF8') || v_doc), 'hex');
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

-- The three functions the services call (the end of this file revokes the rest).
GRANT EXECUTE ON FUNCTION
    fleetward_append_events(uuid, uuid[], text[], jsonb[], timestamptz[], bytea[], bytea, text),
    fleetward_claim_action(bigint, uuid, uuid, text, text, text, jsonb, text, text, text,
                           boolean, uuid, text, text, text, text, timestamptz, jsonb, bytea,
                           bytea, text),
    fleetward_complete_action(uuid, timestamptz, timestamptz, jsonb, text[], text[], jsonb[],
                              jsonb[], uuid[], text[], jsonb[], timestamptz[], bytea[],
                              bytea, text)
    TO fleetward_runtime;

-- The owner's rights where the runtime role has none: appending to the chain (events and
-- head), recording action_targets inside a completion, and a new workspace's chain head.
-- search_path is pinned to this schema with pg_temp last, so no caller's object can stand
-- in for one of ours.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[
        'fleetward_append_events(uuid, uuid[], text[], jsonb[], timestamptz[], bytea[], '
            'bytea, text)',
        'fleetward_complete_action(uuid, timestamptz, timestamptz, jsonb, text[], text[], '
            'jsonb[], jsonb[], uuid[], text[], jsonb[], timestamptz[], bytea[], bytea, text)',
        'fleetward_create_chain_head()']
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       fn, current_schema());
    END LOOP;
END $$;

-- A final action never changes, except completed -> rolled_back, which sets only the
-- rollback columns (status, rollback_action_id, rolled_back_at): a stolen credential
-- cannot rewrite a completed row's result or error on its way to rolled_back.
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

-- The chain head starts at the genesis, moves only forward and only onto an event that is
-- in the chain (so only an append moves it); it is never deleted.
CREATE FUNCTION fleetward_chain_head_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_chain_heads: DELETE of % refused', OLD.workspace_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.last_seq <> 0 OR NEW.last_hash <> repeat('0', 64) THEN
            RAISE EXCEPTION 'a chain head starts at seq 0 with the genesis hash'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.workspace_id IS DISTINCT FROM OLD.workspace_id OR NEW.last_seq <= OLD.last_seq THEN
        RAISE EXCEPTION 'the chain head of % only moves forward (% -> %)', OLD.workspace_id,
            OLD.last_seq, NEW.last_seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NOT EXISTS (SELECT FROM action_events
                   WHERE workspace_id = NEW.workspace_id AND seq = NEW.last_seq
                     AND hash = NEW.last_hash) THEN
        RAISE EXCEPTION 'the chain head of % may only move to an appended event (seq %)',
            NEW.workspace_id, NEW.last_seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_chain_heads_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION fleetward_chain_head_guard();

-- action_targets rows are written only while their action completes (its row is
-- in_progress): a finished action's before/after cannot be added to afterwards. One check
-- per statement, over the inserted rows.
CREATE FUNCTION fleetward_targets_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_action uuid;
BEGIN
    SELECT n.action_id INTO v_action
    FROM (SELECT DISTINCT action_id FROM new_rows) AS n
    LEFT JOIN action_audit_log AS a USING (action_id)
    WHERE a.status IS DISTINCT FROM 'in_progress'
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'action_targets of action % may only be written while it completes',
            v_action USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER action_targets_only_while_completing AFTER INSERT ON action_targets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fleetward_targets_guard();

-- TRUNCATE bypasses row triggers: refuse it on every audit table.
CREATE TRIGGER action_targets_no_truncate BEFORE TRUNCATE ON action_targets
    FOR EACH STATEMENT EXECUTE FUNCTION fleetward_append_only();
CREATE TRIGGER audit_chain_heads_no_truncate BEFORE TRUNCATE ON audit_chain_heads
    FOR EACH STATEMENT EXECUTE FUNCTION fleetward_append_only();

-- Functions: nobody may call one unless granted (PostgreSQL grants EXECUTE to PUBLIC), now
-- and for the functions later migrations create.
DO $$
BEGIN
    EXECUTE format('REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA %I FROM PUBLIC', current_schema());
END $$;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Values every reader can read (audit verify, the watch feed): times within the years
-- 2000 to 9999 (Python's datetime ends at 9999), event payloads are JSON objects.
ALTER TABLE action_audit_log
    ADD CONSTRAINT action_audit_log_times_readable CHECK (
        created_at >= '2000-01-01' AND created_at < '9999-12-31'
        AND (started_at IS NULL OR (started_at >= '2000-01-01' AND started_at < '9999-12-31'))
        AND (completed_at IS NULL
             OR (completed_at >= '2000-01-01' AND completed_at < '9999-12-31'))
        AND (rolled_back_at IS NULL
             OR (rolled_back_at >= '2000-01-01' AND rolled_back_at < '9999-12-31')));
ALTER TABLE action_events
    ADD CONSTRAINT action_events_readable CHECK (
        created_at >= '2000-01-01' AND created_at < '9999-12-31'
        AND jsonb_typeof(payload) = 'object');
