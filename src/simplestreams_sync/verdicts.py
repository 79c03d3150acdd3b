"""Remembered verdicts on images whose bytes do not match the source, so that each is hashed once.

An active image of ours without the verified mark is hashed (every byte read back from Glance) before it
is trusted. When its bytes do not match and it stays (protected, or in use), the next full run would hash
it again, and every run after. `hash-verdicts.json` in the state dir remembers each such verdict, keyed
by what would change it: the image's id, Glance's digest of its bytes (`os_hash_value`, else `checksum`),
its size and `updated_at`, and the source digest it was compared with. A remembered verdict whose key
still holds is an observation the plan takes as it is; any change means hashing again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from .plan import GlanceImage
from .state import read_json, write_json_atomically

VERDICTS_FILE = "hash-verdicts.json"


def key(image: GlanceImage) -> list:
    """What the verdict on the image's bytes depends on (its id is the file's key)."""
    listed = image.properties
    return [
        listed.get("os_hash_value") or listed.get("checksum"),
        listed.get("size"),
        listed.get("updated_at"),
        image.source_digest,
    ]


def remembered_mismatches(state_dir: str | Path, owned: Iterable[GlanceImage]) -> dict[str, str]:
    """Id -> how its bytes differ from the source, for the images whose remembered verdict still holds."""
    verdicts = read_json(Path(state_dir) / VERDICTS_FILE)
    if not isinstance(verdicts, dict):
        return {}
    found = {}
    for image in owned:
        verdict = verdicts.get(image.id)
        if isinstance(verdict, dict) and verdict.get("key") == key(image) and isinstance(verdict.get("mismatch"), str):
            found[image.id] = verdict["mismatch"]
    return found


def remember(state_dir: str | Path, owned: Iterable[GlanceImage], mismatched: Mapping[str, str]) -> None:
    """Keep the verdicts on the owned images found not to match (forgetting images that are gone)."""
    verdicts = {
        image.id: {"key": key(image), "mismatch": mismatched[image.id]} for image in owned if image.id in mismatched
    }
    path = Path(state_dir) / VERDICTS_FILE
    if verdicts or path.exists():
        write_json_atomically(path, verdicts)
