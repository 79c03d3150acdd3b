"""Fixtures for every test: the throw-away signing keys of the generated sources; and, under CI, no
test may be skipped (a missing tool such as qemu-img would otherwise hide a whole suite)."""

import os

import pytest

from tests.localcloud.source import make_test_key


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every test must run: {reason}"


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
