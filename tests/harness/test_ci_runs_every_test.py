"""Under CI no test may be skipped: a missing tool (qemu-img, prometheus) must fail the run, not hide a
suite (tests/conftest.py)."""

from pathlib import Path

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()
A_SKIPPED_TEST = """
import pytest

def test_needs_a_tool():
    pytest.skip("the tool is not installed")
"""


def test_a_skip_fails_under_ci(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(A_SKIPPED_TEST)

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*skipped under CI, where every test must run: Skipped: the tool is not installed*"])


def test_a_skip_stays_a_skip_outside_ci(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(A_SKIPPED_TEST)

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(skipped=1)
