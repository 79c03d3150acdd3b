"""The charm's own modules: its relation protocols and its effects on the machine (ops-aware).

The sync engine is the separate package `simplestreams_sync`, which imports nothing from here or from ops.
"""
