"""The floor: what Glance itself can ingest here, measured with a bare client.

    python -m bench.floor SPEC.json

SPEC (written by bench.sync_bench) holds the Keystone credentials, the content_id to tag images with,
the concurrency and the items (url, name, size). For each item, with `parallel` at a time: create
the image, then stream the bytes from the source HTTP server straight into `PUT /v2/images/<id>/file`:
large reads from the source, sent chunked in 64 KiB HTTP chunks, the transport that costs Glance the least
CPU here (a Content-Length body or 1 MiB chunks cost its server about a fifth more per image, see
bench/README.md). Nothing is hashed or checked on the client: that is the point of a floor. With
"verify", the client computes the two digests the sync computes on the stream; with "send_size", each
upload carries the image's size (X-Openstack-Image-Size), as the sync's do.
Prints `created <id>: <name>` per image; exit code 1 if any upload failed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3 as ks_identity

READ = 4 << 20
PIECE = 64 << 10


def _pieces(response: requests.Response, verify: bool):
    digests = (hashlib.sha256(), hashlib.md5()) if verify else ()
    for chunk in response.raw.stream(READ, decode_content=False):
        for digest in digests:
            digest.update(chunk)
        view = memoryview(chunk)
        for start in range(0, len(view), PIECE):
            yield view[start : start + PIECE]


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    identity = spec["identity"]
    auth = ks_identity.Password(**{k: v for k, v in identity.items() if k != "region"})
    session = ks_session.Session(auth=auth)
    glance = (
        session.get_endpoint(service_type="image", interface="public", region_name=identity["region"])
        .rstrip("/")
        .removesuffix("/v2")
    )
    source = requests.Session()

    def one(item: dict) -> str:
        created = session.post(
            f"{glance}/v2/images",
            json={
                "name": item["name"],
                "disk_format": "qcow2",
                "container_format": "bare",
                "visibility": "public",
                "content_id": spec["content_id"],
            },
        ).json()
        with source.get(item["url"], stream=True, timeout=(30, 300)) as response:
            response.raise_for_status()
            pieces = _pieces(response, spec.get("verify", False))
            size = {"X-Openstack-Image-Size": str(item["size"])} if spec.get("send_size") else {}
            session.put(
                f"{glance}/v2/images/{created['id']}/file",
                data=pieces,
                headers={"Content-Type": "application/octet-stream", **size},
            )
        print(f"created {created['id']}: {item['name']}", flush=True)
        return created["id"]

    with ThreadPoolExecutor(spec["parallel"]) as pool:
        futures = [pool.submit(one, item) for item in spec["items"]]
    failed = 0
    for future in futures:
        if future.exception() is not None:
            print(f"failed: {future.exception()}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
