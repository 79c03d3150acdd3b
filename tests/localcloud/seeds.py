"""Set-up results that every new LocalCloud makes the same way, made once and copied by the others.

Without seeds every cloud runs `keystone-manage db_sync` (Keystone's empty schema, on sqlite), and
`initdb` and `glance-manage db_sync` (Glance's PostgreSQL data directory with Glance's empty schema)
itself. With a seed directory (the functional tests give one per session, under pytest's own tmp dir), the
first cloud that makes one keeps a copy of it, taken while no server has it open, and later new workdirs
start from that copy. Nothing else is shared: each cloud still runs Keystone's bootstrap and picks its own
ports and passwords (Glance's database role gets its new password at each start, as on a reused workdir;
the data directory comes with the superuser password file initdb was given).

    seeds.use(tmp_path / "seeds")   ...   seeds.use(None)
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

_directory: Path | None = None
_lock = threading.Lock()


def use(directory: Path | None) -> None:
    """Keep and reuse seeds in `directory` from now on; None: every cloud makes its own again."""
    global _directory
    _directory = Path(directory) if directory is not None else None


def wanted(name: str) -> bool:
    """Whether there is a seed directory and no seed `name` in it yet."""
    seed = _seed_dir(name)
    return seed is not None and not seed.exists()


def restore(name: str, *targets: Path) -> bool:
    """Copy seed `name` onto `targets` (each a file or directory of the seed, by its name); False when
    there is no such seed (or no seed directory), and the caller makes them itself."""
    seed = _seed_dir(name)
    if seed is None or not seed.is_dir():
        return False
    for target in targets:
        _copy(seed / target.name, target)
    return True


def keep(name: str, *sources: Path) -> None:
    """Keep copies of `sources` (files or directories) as seed `name`, unless there is one already."""
    seed = _seed_dir(name)
    if seed is None or seed.exists():
        return
    with _lock:
        if seed.exists():
            return
        partial = seed.with_name(f"{seed.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for source in sources:
            _copy(source, partial / source.name)
        partial.rename(seed)


def _seed_dir(name: str) -> Path | None:
    return _directory / name if _directory is not None else None


def _copy(source: Path, target: Path) -> None:
    """`cp -a`: owners and modes kept (PostgreSQL's files belong to its own user when we are root)."""
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", f"{source}/.", str(target)], check=True)
    else:
        subprocess.run(["cp", "-a", str(source), str(target)], check=True)
