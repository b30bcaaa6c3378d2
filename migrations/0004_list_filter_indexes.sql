-- ListActions filtered by action type or by status, newest first (keyset on created_at,
-- action_id). Without them a filter that matches little walks the workspace's whole
-- history on every page. With both filters set, PostgreSQL combines the two indexes.
--
-- IF NOT EXISTS: on a large table, build them first with CREATE INDEX CONCURRENTLY under
-- these names (docs/DECISIONS.md); this migration then only records itself.
CREATE INDEX IF NOT EXISTS idx_action_audit_log_type
    ON action_audit_log (workspace_id, action_type, created_at DESC, action_id DESC);

CREATE INDEX IF NOT EXISTS idx_action_audit_log_workspace_status
    ON action_audit_log (workspace_id, status, created_at DESC, action_id DESC);
