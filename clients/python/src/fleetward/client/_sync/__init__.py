"""The blocking clients, GENERATED from ``_async`` by ``clients/python/scripts/unasync.py``."""
