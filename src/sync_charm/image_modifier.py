"""The image-modifier subordinate's script runs as root, as the classic charm ran it, while the sync runs
as its unprivileged user: a sudoers drop-in lets that user run exactly this script as root, and the sync
is told to run it through `sudo -n --`.

The script keeps the environment the sync gives it (the image's fields and IMAGE_PATH), so the rule
turns sudo's env_reset off for this one command; sudo still removes the variables of its env_delete
list (LD_PRELOAD and the like), sets its secure_path, and HOME is root's.
"""

from __future__ import annotations

import logging
import re
import subprocess

from . import host

logger = logging.getLogger(__name__)

SUDO = ["sudo", "-n", "--"]
VISUDO_CHECK = ["visudo", "-c", "-q", "-f"]
SUDOERS_MODE = 0o440
# What sudoers can name as a command without quoting: the script's path must be one.
SUDOERS_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./+-]+")


def relation_problem(apps: tuple[str, ...], script: str | None) -> str | None:
    """Why the image-modifier relation cannot be used: more than one, or a path sudo cannot name."""
    if len(apps) > 1:
        return f"Only one image-modifier subordinate is supported, remove all but one of: {', '.join(apps)}"
    if script and not SUDOERS_SAFE_PATH.fullmatch(script):
        return f"image-modifier script-path {script!r} is not an absolute path of plain characters"
    return None


def command(script: str) -> list[str]:
    """What the sync runs for the script (mirrors.yaml's modify_hook)."""
    return [*SUDO, script]


def sudoers_rule(script: str, user: str, unit_name: str) -> str:
    return (
        f"# Written by the glance-simplestreams-sync charm ({unit_name}): the sync's user runs the\n"
        "# image-modifier subordinate's script as root, with the image's fields in its environment.\n"
        f"Defaults!{script} !env_reset, always_set_home\n"
        f"{user} ALL=(root) NOPASSWD: {script}\n"
    )


def allow(script: str, user: str, unit_name: str) -> None:
    """Install the drop-in for `script`, checked by visudo first: a rule sudo rejects is never installed."""
    rule = sudoers_rule(script, user, unit_name)
    path = host.PATHS.sudoers_file
    if path.exists() and path.read_text() == rule:
        return
    candidate = path.with_name(f".{path.name}.new")  # sudo skips names with a dot
    host.write_file(candidate, rule, mode=SUDOERS_MODE)
    check = subprocess.run([*VISUDO_CHECK, str(candidate)], capture_output=True, text=True)
    if check.returncode != 0:
        host.remove_file(candidate)
        raise RuntimeError(f"visudo rejects the image-modifier rule for {script}: {check.stderr.strip()}")
    candidate.replace(path)
    logger.info("the sync's user may run %s as root (%s)", script, path)


def forbid() -> bool:
    """Remove the drop-in; True if there was one."""
    return host.remove_file(host.PATHS.sudoers_file)
