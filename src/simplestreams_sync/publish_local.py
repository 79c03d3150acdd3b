"""Juju-readable image-ids metadata written to a directory that the unit's own web server serves.

For clouds without an object store. The guarantees are Swift's (publish.py): the products file is
written before the index that points at it, each file replaces the previous one in one rename (a
reader gets the old file or the new one, never a part), and both are then read back through the
served URL, anonymously, as Juju reads them.
"""

from __future__ import annotations

import http.client
import json
import logging
from pathlib import Path

from ._simplestreams import util
from .metadata_layout import INDEX_PATH, products_path
from .openstack import CloudError
from .publish import index_entry, misread_path, write_in_order
from .quick_check import Observations
from .raw_http import open_url
from .state import INTERFACES, sha256_of_file, write_atomically

LOG = logging.getLogger(__name__)

SERVED_FILE_MODE = 0o640  # the sync's user writes, the web server's group reads, nobody else
READ_BACK_TIMEOUT = 30  # seconds


class LocalPublisher:
    """Writes the metadata files under `directory` and proves that `url` serves them."""

    def __init__(
        self,
        directory: str | Path,
        url: str,
        region: str,
        auth_url: str,
        verify: str | bool,
        observations: Observations | None = None,
    ):
        self.directory = Path(directory)
        self.metadata_url = url.rstrip("/")
        self.region = region
        self.auth_url = auth_url
        self.verify = verify  # CAs to check the served URL with, when it is https
        self.observations = observations or Observations()  # what the quick check will compare

    def publish(self, tree: dict, cloud_name: str) -> bool:
        """Products file first, then the index; then both read back through the served URL.

        Returns False when what is published already says the same (nothing is rewritten then)."""
        entry = index_entry(tree, self.region, self.auth_url, cloud_name)
        return write_in_order(
            tree,
            entry,
            read=self.read,
            write=self._write,
            check=self._check_served,
            shown_as=str(self.directory / INDEX_PATH),
        )

    @property
    def index_url(self) -> str:
        return self.url_of(INDEX_PATH)

    def listed_content_ids(self) -> set[str]:
        return set(self.read(INDEX_PATH).get("index") or {})

    def product_streams_urls(self) -> dict[str, str]:
        """The served URL for every interface (the charm registers its bindings' URLs itself)."""
        return dict.fromkeys(INTERFACES, self.metadata_url)

    def read(self, path: str) -> dict:
        """A published file as a dict; {} when it is missing or not a JSON object."""
        try:
            data = json.loads((self.directory / path).read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, path: str, data: dict) -> None:
        target = self.directory / path
        try:
            write_atomically(target, util.dump_data(data).decode(), mode=SERVED_FILE_MODE)
        except OSError as error:
            raise CloudError(f"cannot write {target}: {error.strerror or error}") from None

    def _check_served(self, content_id: str, products: dict, entry: dict) -> None:
        """Read without credentials, as Juju does: our products file and our entry of the index must be
        what the directory holds; record what the quick check compares."""
        misread = misread_path(self._read_served, content_id, products, entry)
        if misread:
            raise self._served_otherwise(misread)
        for served in (products_path(content_id), INDEX_PATH):
            file = self.directory / served
            self.observations.local_file(str(file), _sha256(file), self.url_of(served))

    def url_of(self, path: str) -> str:
        return f"{self.metadata_url}/{path}"

    def _read_served(self, path: str):
        url = self.url_of(path)
        try:
            with open_url(url, {"Accept": "application/json"}, verify=self.verify, timeout=READ_BACK_TIMEOUT) as answer:
                body = answer.read()
        except OSError as error:  # urllib's HTTPError and URLError are OSErrors
            raise CloudError(
                f"the unit's web server does not serve {url}: {_reason(error)}; check that it runs "
                "(systemctl status nginx) and that the charm's site config is in place"
            ) from None
        except http.client.HTTPException as error:
            raise CloudError(f"the unit's web server answers {url} with no valid HTTP: {error}") from None
        try:
            return json.loads(body)
        except ValueError:
            return None

    def _served_otherwise(self, path: str) -> CloudError:
        return CloudError(
            f"{self.url_of(path)} serves other content than the sync wrote to {self.directory / path}: "
            "the web server must serve that directory"
        )


def _reason(error: OSError) -> str:
    code = getattr(error, "code", None)
    if code is not None:
        return f"HTTP {code} {getattr(error, 'reason', '')}".strip()
    reason = getattr(error, "reason", None) or error.strerror or error
    return " ".join(str(reason).split())


def _sha256(path: Path) -> str:
    return sha256_of_file(path)
