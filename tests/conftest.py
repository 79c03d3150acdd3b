"""Fixtures for every test: the throw-away signing keys of the generated sources."""

import pytest

from tests.localcloud.source import make_test_key


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
