"""The published metadata's layout, the same in the object store and in the unit's served directory,
and whether a configuration publishes it at all. Standard library only: the charm reads it in hooks."""

from __future__ import annotations

INDEX_PATH = "streams/v1/index.json"


def products_path(content_id: str) -> str:
    return f"streams/v1/{content_id}.json"


def publishes_metadata(serves_locally: bool, use_swift: bool) -> bool:
    """The unit's own web server (serve_metadata) wins over use_swift; use_swift false alone publishes nothing."""
    return serves_locally or use_swift
