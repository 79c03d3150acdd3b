"""The directories the sync creates (state dir, served metadata): standard library only, since the lock
that a scheduled run takes first creates the state dir before anything heavy is loaded."""

from __future__ import annotations

import contextlib
import os
import stat

DEFAULT_STATE_DIR = "/var/lib/glance-simplestreams-sync"
DIR_MODE = 0o755  # of a directory the sync creates


def make_dirs(path: str | os.PathLike, mode: int = DIR_MODE) -> None:
    """Create `path` and its missing parents with `mode`, whatever the process umask. A directory that
    inherits the set-group-ID bit (in the served directory: the web server's group) is left as created:
    a chmod by a user outside that group would drop the bit, and with it the group of what follows."""
    missing = []
    directory = os.path.abspath(path)
    while not os.path.exists(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory)
        if not os.stat(directory).st_mode & stat.S_ISGID:
            os.chmod(directory, mode)
