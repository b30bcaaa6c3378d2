-- Fleetward initial schema (ARCHITECTURE §6).
-- Forward-only: never edit an applied migration; add 0002_… instead.

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE departments (
    workspace_id   uuid NOT NULL REFERENCES workspaces (id),
    department_id  text NOT NULL CHECK (department_id ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    name           text NOT NULL,
    PRIMARY KEY (workspace_id, department_id)
);

CREATE TABLE agents (
    workspace_id          uuid NOT NULL,
    agent_id              text NOT NULL CHECK (agent_id ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    department_id         text NOT NULL,
    status                text NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'paused', 'retired')),
    paused_until          timestamptz,
    generation            bigint NOT NULL DEFAULT 0,
    restart_requested_at  timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_action_id        uuid,
    PRIMARY KEY (workspace_id, agent_id),
    FOREIGN KEY (workspace_id, department_id) REFERENCES departments (workspace_id, department_id),
    CHECK (status = 'paused' OR paused_until IS NULL)
);
CREATE INDEX agents_by_department ON agents (workspace_id, department_id, agent_id);
-- The expiring-pause scheduler scans only timed pauses.
CREATE INDEX agents_pause_expiry ON agents (paused_until)
    WHERE status = 'paused' AND paused_until IS NOT NULL;

-- A target's own monthly budget. A cleared budget keeps its row (monthly_limit_cents NULL)
-- so that last_action_id still says which action changed it last (rollback supersession).
CREATE TABLE budgets (
    workspace_id         uuid NOT NULL REFERENCES workspaces (id),
    scope                text NOT NULL CHECK (scope IN ('fleet', 'department', 'agent')),
    target_id            text NOT NULL DEFAULT '',
    monthly_limit_cents  bigint CHECK (monthly_limit_cents BETWEEN 0 AND 1000000000000),
    last_action_id       uuid,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, scope, target_id),
    CHECK ((scope = 'fleet') = (target_id = ''))
);

-- The seed's audit log, adapted (ARCHITECTURE §6).
CREATE TABLE action_audit_log (
    action_id              uuid PRIMARY KEY,
    workspace_id           uuid NOT NULL REFERENCES workspaces (id),
    action_type            text NOT NULL,
    scope                  text NOT NULL CHECK (scope IN ('fleet', 'department', 'agent')),
    target_id              text NOT NULL DEFAULT '',
    action_params          jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason                 text NOT NULL,
    actor_user_id          text NOT NULL,
    actor_role             text NOT NULL DEFAULT '',
    status                 text NOT NULL
                           CHECK (status IN ('pending', 'in_progress', 'completed', 'failed',
                                             'rolled_back', 'denied')),
    result                 jsonb,
    error_message          text,
    -- The error a repeated request gets back (code, reason, metadata) for failed/denied rows.
    error_details          jsonb,
    can_rollback           boolean NOT NULL DEFAULT false,
    rollback_action_id     uuid REFERENCES action_audit_log (action_id),
    rollback_of_action_id  uuid REFERENCES action_audit_log (action_id),
    request_id             text NOT NULL CHECK (request_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    request_fingerprint    text NOT NULL,
    policy_version         text,
    decision_id            text,
    created_at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at             timestamptz,
    completed_at           timestamptz,
    rolled_back_at         timestamptz,
    CONSTRAINT action_audit_log_idempotency UNIQUE (workspace_id, actor_user_id, request_id)
);
-- The seed's three indexes.
CREATE INDEX idx_action_audit_log_workspace_created
    ON action_audit_log (workspace_id, created_at DESC, action_id DESC);
CREATE INDEX idx_action_audit_log_actor
    ON action_audit_log (workspace_id, actor_user_id, created_at DESC, action_id DESC);
CREATE INDEX idx_action_audit_log_status
    ON action_audit_log (status) WHERE status IN ('pending', 'in_progress');

-- Per-target before/after of an action: what rollback restores and supersession compares.
CREATE TABLE action_targets (
    action_id    uuid NOT NULL REFERENCES action_audit_log (action_id),
    target_kind  text NOT NULL CHECK (target_kind IN ('agent', 'budget')),
    target_key   text NOT NULL,
    before       jsonb NOT NULL,
    after        jsonb NOT NULL,
    PRIMARY KEY (action_id, target_kind, target_key)
);

-- The append-only, hash-chained outbox of action events.
CREATE TABLE action_events (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    seq           bigint NOT NULL CHECK (seq > 0),
    action_id     uuid NOT NULL REFERENCES action_audit_log (action_id),
    event_type    text NOT NULL
                  CHECK (event_type IN ('action.pending', 'action.in_progress', 'action.completed',
                                        'action.failed', 'action.rolled_back', 'action.denied')),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    prev_hash     text NOT NULL,
    hash          text NOT NULL,
    PRIMARY KEY (workspace_id, seq)
);
CREATE INDEX action_events_by_action ON action_events (action_id);

CREATE TABLE audit_chain_heads (
    workspace_id  uuid PRIMARY KEY REFERENCES workspaces (id),
    last_seq      bigint NOT NULL DEFAULT 0,
    last_hash     text NOT NULL DEFAULT repeat('0', 64)
);

-- Every workspace gets its chain head when it is created.
CREATE FUNCTION fleetward_create_chain_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_chain_heads (workspace_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER workspaces_chain_head AFTER INSERT ON workspaces
    FOR EACH ROW EXECUTE FUNCTION fleetward_create_chain_head();

-- Only the transitions of ARCHITECTURE §5.6; who/what/when columns never change.
CREATE FUNCTION fleetward_audit_log_guard() RETURNS trigger
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
    IF (OLD.status, NEW.status) IN (
        ('pending', 'in_progress'), ('in_progress', 'completed'), ('in_progress', 'failed'),
        ('pending', 'failed'), ('pending', 'denied'), ('completed', 'rolled_back')) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'invalid status transition % -> % for action %', OLD.status, NEW.status,
        OLD.action_id USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER action_audit_log_guard BEFORE UPDATE OR DELETE ON action_audit_log
    FOR EACH ROW EXECUTE FUNCTION fleetward_audit_log_guard();

CREATE FUNCTION fleetward_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER action_events_no_update BEFORE UPDATE OR DELETE ON action_events
    FOR EACH ROW EXECUTE FUNCTION fleetward_append_only();
CREATE TRIGGER action_events_no_truncate BEFORE TRUNCATE ON action_events
    FOR EACH STATEMENT EXECUTE FUNCTION fleetward_append_only();
CREATE TRIGGER action_audit_log_no_truncate BEFORE TRUNCATE ON action_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION fleetward_append_only();
CREATE TRIGGER action_targets_no_update BEFORE UPDATE OR DELETE ON action_targets
    FOR EACH ROW EXECUTE FUNCTION fleetward_append_only();
