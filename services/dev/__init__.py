"""Developer tooling: embedded PostgreSQL, dev secrets and tokens, code generation, make run."""
