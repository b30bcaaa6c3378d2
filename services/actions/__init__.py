"""The action service: Execute, Rollback and the reads around them."""
