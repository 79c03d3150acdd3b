"""Remembered verdicts on images whose bytes do not match the source (verdicts.py): each is hashed once,
again only when what the verdict depends on changes."""

from __future__ import annotations

import pytest

from simplestreams_sync import verdicts
from simplestreams_sync.plan import Facts, GlanceImage, make_plan

MISMATCH = "its bytes (sha256:aa) do not match the source (sha256:bb)"


def image(**changes) -> GlanceImage:
    listed = {
        "id": "img-1",
        "name": "auto-sync/ubuntu-noble",
        "status": "active",
        "protected": True,
        "source_content_id": "com.ubuntu.cloud:released:download",
        "product_name": "com.ubuntu.cloud:server:24.04:amd64",
        "version_name": "20261201",
        "item_name": "disk1.img",
        "simplestreams_metadata": '{"sha256": "bb"}',
        "os_hash_value": "5e1f",
        "checksum": "c0de",
        "size": 1024,
        "updated_at": "2026-12-01T10:00:00Z",
        **changes,
    }
    return GlanceImage.from_glance(listed)


def test_a_remembered_verdict_is_taken_while_its_key_holds(tmp_path):
    verdicts.remember(tmp_path, [image()], {"img-1": MISMATCH})

    assert verdicts.remembered_mismatches(tmp_path, [image()]) == {"img-1": MISMATCH}


@pytest.mark.parametrize(
    "change",
    [
        {"os_hash_value": "other"},
        {"os_hash_value": None, "checksum": "c0de"},  # another digest of the bytes than the one remembered
        {"size": 2048},
        {"updated_at": "2026-12-02T10:00:00Z"},
        {"simplestreams_metadata": '{"sha256": "cc"}'},
        {"id": "img-2"},
    ],
)
def test_any_change_of_what_it_depends_on_means_hashing_again(tmp_path, change):
    verdicts.remember(tmp_path, [image()], {"img-1": MISMATCH})

    assert verdicts.remembered_mismatches(tmp_path, [image(**change)]) == {}


def test_verdicts_on_images_that_are_gone_or_now_match_are_forgotten(tmp_path):
    verdicts.remember(tmp_path, [image()], {"img-1": MISMATCH})

    verdicts.remember(tmp_path, [image(id="img-2")], {})

    assert verdicts.remembered_mismatches(tmp_path, [image()]) == {}


@pytest.mark.parametrize("text", ["", "[]", '{"img-1": "not a verdict"}'])
def test_a_file_that_is_not_one_remembers_nothing(tmp_path, text):
    (tmp_path / verdicts.VERDICTS_FILE).write_text(text)

    assert verdicts.remembered_mismatches(tmp_path, [image()]) == {}


def test_the_plan_takes_a_remembered_verdict_instead_of_hashing(tmp_path):
    verdicts.remember(tmp_path, [image()], {"img-1": MISMATCH})
    owned = (image(),)

    fresh = make_plan(Facts(desired=(), owned=owned))
    remembered = make_plan(Facts(desired=(), owned=owned, mismatched=verdicts.remembered_mismatches(tmp_path, owned)))

    assert [adopted.id for adopted in fresh.adopt] == ["img-1"]
    assert remembered.adopt == []
    assert [(decision.image.id, decision.reason.split(":")[0]) for decision in remembered.needs_decision] == [
        ("img-1", "protected, but its bytes do not match the source")
    ]
