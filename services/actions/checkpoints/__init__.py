"""Signed checkpoints of the audit chains, kept outside PostgreSQL (docs/architecture.md §6).

:mod:`.signing` is the format and the keys, :mod:`.files` the append-only files,
:mod:`.writer` the action service's background writer and :mod:`.reader` what
``audit verify --checkpoints`` loads.
"""
