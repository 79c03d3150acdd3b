"""The image-modifier relation's script: run on a local copy of each image before upload."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import subprocess
from pathlib import Path

from .source import SourceImage
from .source_http import CHUNK_SIZE

HOOK_TIMEOUT = 3600


class ModifyHookError(Exception):
    pass


def run_modify_hook(command: list[str], image_path: Path, metadata: dict) -> None:
    """Run the script as sstream-mirror-glance does: item fields and IMAGE_PATH in its environment.
    `command` is the script, or what runs it with other privileges (the charm's `sudo -n -- script`)."""
    script = shlex.join(command)
    fields = {key: str(value) for key, value in metadata.items() if isinstance(value, (str, int, float))}
    env = {**os.environ, **fields, "IMAGE_PATH": str(image_path), "FIELDS": " ".join([*fields, "IMAGE_PATH"])}
    try:
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HOOK_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ModifyHookError(f"image-modifier script {script}: {error}") from None
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or [""]
        raise ModifyHookError(f"image-modifier script {script} exited {completed.returncode}: {detail[0][:300]}")


def modified_image(image: SourceImage, path: Path) -> SourceImage:
    """The image as the script left it: its own size and checksums, read from the local file."""
    sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    metadata = {**image.metadata, "sha256": sha256.hexdigest(), "md5": md5.hexdigest(), "size": str(size)}
    return dataclasses.replace(
        image, url=path.as_uri(), size=size, sha256=sha256.hexdigest(), md5=md5.hexdigest(), metadata=metadata
    )
