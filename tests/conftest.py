"""Make `src/` (the charm and the sync engine) and the repo root (tests.localcloud) importable."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "src", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


import pytest  # noqa: E402

from tests.localcloud.source import make_test_key  # noqa: E402


@pytest.fixture(scope="session")
def test_key(tmp_path_factory):
    """A throw-away GPG key that signs the generated sources."""
    with make_test_key(tmp_path_factory.mktemp("gpg")) as key:
        yield key


@pytest.fixture(scope="session")
def other_key(tmp_path_factory):
    """Another throw-away key: a signature by it must be refused."""
    with make_test_key(tmp_path_factory.mktemp("gpg2"), name="Someone Else") as key:
        yield key
