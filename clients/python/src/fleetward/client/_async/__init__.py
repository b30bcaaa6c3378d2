"""The async clients: the one hand-written source the sync clients are generated from."""
