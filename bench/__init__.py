"""Benchmarks of the sync engine against Glance's floor and sstream-mirror-glance (see sync_bench)."""
