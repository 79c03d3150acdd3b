"""The no-op floor: the least any check that nothing changed can do, with the standard library alone.

    python -m bench.noop_floor SPEC.json

SPEC (written by bench.sync_bench) holds the sync user's credentials (auth_url, username, password,
project_name, user_domain_name, project_domain_name, region), the content_id and the URL of the published
index. The client starts, logs in to Keystone (one request, the catalog in its answer) while it reads the
published index anonymously, then lists our images in Glance (owner and content_id; Glance validates the
new token with Keystone first). Prints how many images it listed; exit code 1 when a request fails.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.parse
import urllib.request

TIMEOUT = 30


def login(identity: dict) -> tuple[str, dict]:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": identity["username"],
                        "domain": {"name": identity["user_domain_name"]},
                        "password": identity["password"],
                    }
                },
            },
            "scope": {
                "project": {"name": identity["project_name"], "domain": {"name": identity["project_domain_name"]}}
            },
        }
    }
    request = urllib.request.Request(
        identity["auth_url"].rstrip("/") + "/auth/tokens",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.headers["X-Subject-Token"], json.load(response)["token"]


def glance_endpoint(token: dict, region: str) -> str:
    for service in token["catalog"]:
        if service["type"] == "image":
            for endpoint in service["endpoints"]:
                if endpoint["interface"] == "public" and endpoint["region_id"] == region:
                    return endpoint["url"].rstrip("/")
    raise LookupError("no public image endpoint")


def main(argv: list[str]) -> int:
    with open(argv[0]) as stream:
        spec = json.load(stream)
    index: dict = {}

    def read_index() -> None:
        with urllib.request.urlopen(spec["index_url"], timeout=TIMEOUT) as response:
            index.update(json.load(response))

    reader = threading.Thread(target=read_index)
    reader.start()
    identity = spec["identity"]
    token, answer = login(identity)
    query = urllib.parse.urlencode({"owner": answer["project"]["id"], "content_id": spec["content_id"]})
    listing = urllib.request.Request(
        f"{glance_endpoint(answer, identity['region'])}/v2/images?{query}", headers={"X-Auth-Token": token}
    )
    with urllib.request.urlopen(listing, timeout=TIMEOUT) as response:
        images = json.load(response)["images"]
    reader.join()
    if spec["content_id"] not in index.get("index", {}):
        print(f"the index does not list {spec['content_id']}", file=sys.stderr)
        return 1
    print(f"listed {len(images)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
