"""The audit trail: its canonical form (:mod:`.documents`) and ``audit verify``
(:mod:`.chain`, :mod:`.crosscheck`, :mod:`.verify`, :mod:`.cli`); its tables are read and
written through :mod:`services.actions.store`.

See docs/architecture.md §6 ("Audit integrity"). For every workspace, in one REPEATABLE
READ snapshot (so the chain head, the rows and the events belong to one moment, however
much is appended meanwhile) and streaming through server-side cursors (millions of rows
never sit in memory), it:

1. recomputes the hash chain with the writer's own pieces (:func:`.documents.doc_head`,
   :func:`.documents.doc_tail`, :func:`.documents.chain_hash`) and compares its end with
   ``audit_chain_heads``;
2. with ``--checkpoints``, checks that every signed checkpoint (seq, hash) is still on
   the recomputed chain and that the chain reaches the newest one;
3. cross-checks every ``action_audit_log`` row against the newest event of its action
   (the snapshot the chain signs), and ``action_targets`` against the summary its
   completed event recorded.

What it finds, by kind (a chain is checked on past a break, from what is stored, up to
1,000 breaks; the cross-checks always run and report every mismatch):

- ``edited``: an event's content no longer matches its hash;
- ``deleted``: a ``seq`` is missing (a gap);
- ``reordered``: an event does not follow its predecessor, but follows a later one;
- ``relinked``: an event does not link to its predecessor (an event before it was
  rewritten and re-hashed, or one was inserted);
- ``head_mismatch``: the last event is not the one ``audit_chain_heads`` recorded;
- ``forged_suffix``: the chain disagrees with a signed checkpoint: the history up to that
  seq was rewritten and re-hashed (or replaced after a truncation);
- ``truncated_after_checkpoint``: the chain ends before the newest signed checkpoint;
- ``bad_signature``: a checkpoint line does not verify (or names an unknown key);
- ``row_rewritten``: an audit row differs from what the chain says of its action;
- ``targets_missing`` / ``targets_rewritten``: ``action_targets`` rows are gone, or differ
  from (or add to) what the completed event recorded;
- ``unsigned_events``: with ``--checkpoints``, events older than ``--max-unsigned-age``
  (600 s) that no checkpoint covers (the writer was stopped or blocked);
- ``undecodable``: stored data the verifier cannot read (the rest of that workspace is
  unchecked).

Exit codes: 0 all verified; 1 something is broken (each finding is printed); 2 nothing
could be verified (bad input, unknown workspace, unreadable checkpoints, no database).
"""
