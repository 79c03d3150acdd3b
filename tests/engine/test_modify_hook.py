"""The image-modifier command: what mirrors.yaml names is exactly what runs, with the image's fields and
IMAGE_PATH in its environment, as sstream-mirror-glance runs the script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from simplestreams_sync.config import SyncConfig
from simplestreams_sync.modify import ModifyHookError, run_modify_hook

RECORDER = """
import json, os, sys
with open(os.environ["IMAGE_PATH"] + ".seen", "w") as out:
    json.dump({"argv": sys.argv[1:], "image_path": os.environ["IMAGE_PATH"], "fields": os.environ["FIELDS"],
               "release": os.environ.get("release")}, out)
"""


def test_the_configured_command_is_what_runs(tmp_path: Path):
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    image = tmp_path / "image"
    image.write_bytes(b"disk")
    command = [sys.executable, str(recorder), "--as-root-stand-in"]

    run_modify_hook(command, image, {"release": "noble", "size": 4, "skipped": {"not": "a field"}})

    seen = json.loads((tmp_path / "image.seen").read_text())
    assert seen == {
        "argv": ["--as-root-stand-in"],
        "image_path": str(image),
        "fields": "release size IMAGE_PATH",
        "release": "noble",
    }


def test_a_failing_command_is_named_in_the_error(tmp_path: Path):
    with pytest.raises(ModifyHookError) as raised:
        run_modify_hook([sys.executable, "-c", "import sys; sys.exit('no room')"], tmp_path / "image", {})

    assert (
        str(raised.value)
        == f"image-modifier script {sys.executable} -c 'import sys; sys.exit('\"'\"'no room'\"'\"')' exited 1: no room"
    )


@pytest.mark.parametrize(
    ("written", "command"),
    [
        ("/usr/local/bin/modify", ["/usr/local/bin/modify"]),
        (["sudo", "-n", "--", "/usr/local/bin/modify"], ["sudo", "-n", "--", "/usr/local/bin/modify"]),
        (None, None),
    ],
)
def test_mirrors_yaml_names_the_script_or_its_command(written, command):
    assert SyncConfig(modify_hook=written).modify_hook == command


def test_an_empty_command_is_refused():
    with pytest.raises(ValueError, match="an empty command runs nothing"):
        SyncConfig(modify_hook=[])
