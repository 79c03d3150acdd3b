"""The main job end to end on this machine: a local cloud, a local signed source, one sync, the result.

    ./demo            (or: .venv/bin/python -m tests.localcloud.demo --workdir .work/demo)

Starts Keystone, Glance and Swift on 127.0.0.1 and a signed simplestreams source served over HTTP,
renders mirrors.yaml + identity.yaml as the charm does, runs `python -m simplestreams_sync` twice (the
second run has nothing to do), shows `openstack image list` and the published metadata, then stops
everything it started.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from tests.localcloud.cloud import LocalCloud
from tests.localcloud.engine_cli import engine_argv, engine_env, openstack_env
from tests.localcloud.source import SourceBuilder, make_test_key
from tests.localcloud.source_server import SourceServer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def build_source(root: Path, key) -> None:
    builder = SourceBuilder(root, key)
    for release, version, serial, seed in (
        ("focal", "20.04", "20250101", 1),
        ("jammy", "22.04", "20250102", 2),
        ("noble", "24.04", "20250103", 3),
    ):
        builder.add_image(release=release, version=version, serial=serial, seed=seed, size=8 << 20)
        builder.add_image(release=release, version=version, serial=serial, ftype="root.tar.xz", size=4096)
    builder.write()


def write_sync_files(etc: Path, cloud: LocalCloud, source_url: str, keyring: Path, state_dir: Path) -> None:
    etc.mkdir(parents=True, exist_ok=True)
    mirrors = {
        "mirror_list": [
            {
                "url": source_url,
                "path": "streams/v1/index.sjson",
                "max": 1,
                "item_filters": ["release~(focal|jammy|noble)", "arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"],
            }
        ],
        "keyring": str(keyring),
        "state_dir": str(state_dir),
        "region": cloud.sync_identity["region"],
    }
    (etc / "mirrors.yaml").write_text(yaml.safe_dump(mirrors))
    identity = etc / "identity.yaml"
    identity.write_text(yaml.safe_dump(cloud.sync_identity))
    identity.chmod(0o600)


def run_sync(etc: Path) -> int:
    env = engine_env()
    command = engine_argv(etc / "mirrors.yaml", etc / "identity.yaml")
    print(f"\n$ python -m simplestreams_sync --mirrors {etc}/mirrors.yaml --identity {etc}/identity.yaml", flush=True)
    return subprocess.run(command, env=env).returncode


def show_images(cloud: LocalCloud) -> None:
    identity = cloud.sync_identity
    env = openstack_env(identity)
    print("\n$ openstack image list --long -c Name -c Status -c Size -c Visibility", flush=True)
    subprocess.run(
        [
            str(BIN / "openstack"),
            "image",
            "list",
            "--long",
            "-c",
            "Name",
            "-c",
            "Status",
            "-c",
            "Size",
            "-c",
            "Visibility",
        ],
        env=env,
    )


def show_metadata(cloud: LocalCloud) -> None:
    url = f"{cloud.swift_url}/simplestreams/data/streams/v1/index.json"
    print(f"\n$ curl {url}   # anonymous, as Juju reads it")
    print(requests.get(url, timeout=10).text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".work" / "demo")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    print("Starting Keystone, Glance and Swift on 127.0.0.1 ...", flush=True)
    with make_test_key(workdir / "gpg") as key, LocalCloud(workdir / "cloud") as cloud:
        build_source(workdir / "source", key)
        with SourceServer(workdir / "source", workdir / "source-server") as server:
            print(f"Signed simplestreams source at {server.url}streams/v1/index.sjson", flush=True)
            write_sync_files(workdir / "etc", cloud, server.url, key.keyring, workdir / "state")
            first = run_sync(workdir / "etc")
            second = run_sync(workdir / "etc")
            show_images(cloud)
            show_metadata(cloud)
            print(f"\nLast result: {workdir / 'state' / 'last-sync.json'}")
    print("Everything started by the demo has been stopped.")
    return 0 if first == 0 and second == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
