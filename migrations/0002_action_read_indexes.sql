-- Indexes for the action service's reads (ARCHITECTURE §2).

-- ListActions filtered by target, newest first (keyset on created_at, action_id).
CREATE INDEX idx_action_audit_log_target
    ON action_audit_log (workspace_id, target_id, created_at DESC, action_id DESC);

-- The rollbacks of an action (GetAction links, rollback races and audits).
CREATE INDEX idx_action_audit_log_rollback_of
    ON action_audit_log (rollback_of_action_id) WHERE rollback_of_action_id IS NOT NULL;
