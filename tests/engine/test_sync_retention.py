"""Which superseded images are deleted, and which are kept with a reason."""

from simplestreams_sync.retention import plan_retention
from simplestreams_sync.source import SourceImage

SCID = "com.ubuntu.cloud:released:download"
FOCAL = "com.ubuntu.cloud:server:20.04:amd64"


def wanted(version, product=FOCAL):
    return SourceImage(SCID, product, version, "disk1.img", "http://x", 1, "0" * 64, None, {})


def ours(image_id, version, product=FOCAL, **extra):
    return {
        "id": image_id,
        "name": f"auto-sync/{version}",
        "source_content_id": SCID,
        "product_name": product,
        "version_name": version,
        "item_name": "disk1.img",
        **extra,
    }


def test_older_version_is_deleted_once_the_new_one_is_present():
    plan = plan_retention([wanted("20240102")], [ours("old", "20240101"), ours("new", "20240102")], set())
    assert [i["id"] for i in plan.delete] == ["old"]


def test_older_version_is_kept_while_the_new_one_is_missing():
    plan = plan_retention([wanted("20240102")], [ours("old", "20240101")], set())
    assert plan.delete == [] and "kept until its replacement" in plan.keep[0][1]


def test_image_in_use_is_kept():
    plan = plan_retention([wanted("20240102")], [ours("old", "20240101"), ours("new", "20240102")], {"old"})
    assert plan.delete == [] and plan.keep[0][1] == "superseded but in use by a server"


def test_protected_image_is_kept():
    plan = plan_retention(
        [wanted("20240102")], [ours("old", "20240101", protected=True), ours("new", "20240102")], set()
    )
    assert plan.delete == [] and plan.keep[0][1] == "superseded but protected"


def test_product_no_longer_selected_is_listed_not_deleted():
    plan = plan_retention([wanted("20240102")], [ours("new", "20240102"), ours("bionic", "1", product="b")], set())
    assert plan.delete == [] and "no longer selected" in plan.keep[0][1]


def test_max_two_keeps_both_selected_versions():
    plan = plan_retention([wanted("3"), wanted("2")], [ours("a", "1"), ours("b", "2"), ours("c", "3")], set())
    assert [i["id"] for i in plan.delete] == ["a"]


def test_images_of_a_mirror_that_could_not_be_read_are_kept_with_that_reason():
    plan = plan_retention([], [ours("a", "1")], set(), all_sources_read=False)
    assert plan.delete == [] and plan.keep[0][1] == "not offered by the mirrors read in this run"


def test_what_glance_and_the_sources_show_is_settled_what_nova_shows_is_not():
    """A kept image is settled when the quick check observes everything that would change that (Glance's
    listing, the sources); Nova's servers it does not observe, nor a replacement still to come."""
    verified = [
        ours("protected", "1", protected=True),
        ours("used", "2"),
        ours("new", "4"),
        ours("newer", "5"),
        ours("bionic", "1", product="b"),
    ]
    plan = plan_retention([wanted("4")], verified, {"used"})
    settled = {kept.image["id"]: kept.settled for kept in plan.keep}
    assert settled == {"protected": True, "used": False, "newer": True, "bionic": True}

    waiting = plan_retention([wanted("4")], [ours("old", "3")], set())
    unread = plan_retention([], [ours("a", "1")], set(), all_sources_read=False)
    assert [kept.settled for kept in waiting.keep + unread.keep] == [False, False]
