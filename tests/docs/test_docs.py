"""The documentation against the code: the reference names every option, action parameter and message
the charm has, and every relative link in README.md, CONTRIBUTING.md and docs/ leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.docs.charm_messages import charm_messages

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *DOCS.rglob("*.md")])
# Pages other branches write, linked before they are merged. Whoever merges one removes it from here.
PENDING_PAGES: set[str] = set()
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
MIN_FIXED_TEXT = 10  # a template with less fixed text than this would match almost anything


def reference_text() -> str:
    return "\n".join(page.read_text() for page in sorted(REFERENCE.glob("*.md")))


def code_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def test_every_option_is_in_the_options_reference():
    options = yaml.safe_load((ROOT / "config.yaml").read_text())["options"]
    documented = code_spans((REFERENCE / "options.md").read_text())

    assert sorted(set(options) - documented) == []


def test_every_action_parameter_is_in_the_action_reference():
    actions = yaml.safe_load((ROOT / "actions.yaml").read_text())
    documented = (REFERENCE / "action.md").read_text()

    assert sorted(actions) == ["sync-images"]
    assert f"`{'sync-images'}`" in documented
    params = actions["sync-images"]["params"]
    assert sorted(name for name in params if f"| `{name}` |" not in documented) == []


MESSAGES = charm_messages()


def test_the_charm_s_messages_are_found_in_its_source():
    kinds = {message.kind for message in MESSAGES}
    fixed = [message.fixed_text for message in MESSAGES]

    assert kinds == {"status", "action failure"}
    assert "Waiting for keystone to send service credentials on identity-service" in fixed
    assert [message.readable() for message in MESSAGES if len(message.fixed_text) < MIN_FIXED_TEXT] == []


@pytest.mark.parametrize(
    "message", MESSAGES, ids=lambda message: f"{message.kind}:{Path(message.source).stem}:{message.line}"
)
def test_every_message_the_charm_can_show_is_in_the_reference(message):
    documented = message.pattern().search(reference_text()) is not None

    where = f"{message.source}:{message.line}"
    assert documented, f"{where}: {message.kind} {message.readable()!r} is not in docs/reference"


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of the page's headings."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", FENCE.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.replace("`", "")).strip().lower().replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        name = linked.relative_to(ROOT).as_posix() if linked.is_relative_to(ROOT) else str(linked)
        if not linked.exists():
            if name not in PENDING_PAGES:
                broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)

    assert broken == []


def test_pending_pages_are_still_pending():
    merged = sorted(page for page in PENDING_PAGES if (ROOT / page).exists())

    assert merged == [], "merged: remove these from PENDING_PAGES in tests/docs/test_docs.py"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
