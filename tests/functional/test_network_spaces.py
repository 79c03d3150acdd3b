"""Network spaces: the sync talks to keystone, Glance and the object store on the interface it is told
to use, registers the object store's URL of each interface for product-streams, and names keystone's
public URL in the metadata, so that Juju, which reads the public product-streams URL anonymously and
matches {region, its cloud's auth URL}, finds exactly the synced active images.

Each test runs in a region of its own whose every catalog interface has its own address
(tests/functional/spaces.py); the RGW variants run from test_rgw.py.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
import requests
import yaml
from keystoneclient.v3 import client as keystone_v3
from ops import testing

from charm import GlanceSimplestreamsSyncCharm
from simplestreams_sync import quick_check
from tests.functional.conftest import keystone_answer, our_images
from tests.functional.spaces import INTERFACES, SERVICE_TYPES, juju_image_ids, spaced_region

pytestmark = pytest.mark.functional

QUICK = "(quick check; --full-check redoes it all)"


@pytest.fixture
def region(cloud, request):
    """A spaced region (tests/functional/spaces.py); parametrized indirectly: the endpoints it lacks."""
    with spaced_region(cloud, missing=getattr(request, "param", ())) as spaced:
        yield spaced


def sync_in(region, sync, interface: str, **identity) -> None:
    """The sync's files as the charm renders them for `interface`, in the spaced region."""
    sync.identity_override = {
        **sync.cloud.sync_identity,
        "auth_url": region.url("identity", interface),
        "interface": interface,
        "region": region.name,
        **identity,
    }
    sync.settings["region"] = region.name
    sync.content_id_template = f"test.spaces.{region.name}"


def sync_one_image(region, source, sync, seed: int, **identity):
    """Sync one new image over the internal interface of the region."""
    source.add_image(seed=seed)
    source.write()
    sync_in(region, sync, "internal", **identity)
    return sync.run([sync.mirror(source.url)])


def active_ids(glance, content_id: str) -> set[str]:
    return {image["id"] for image in our_images(glance, content_id) if image["status"] == "active"}


def published_clouds(region, sync) -> list:
    """The `clouds` of our index entry and the `endpoint` of every item, read through the public URL."""
    base = region.product_streams_urls()["public"]
    index = json.loads(_get(f"{base}/streams/v1/index.json"))
    entry = index["index"][sync.content_id]
    products = json.loads(_get(f"{base}/{entry['path']}"))
    endpoints = {
        item["endpoint"]
        for product in products["products"].values()
        for version in product["versions"].values()
        for item in version["items"].values()
    }
    return [entry["clouds"], endpoints]


def _get(url: str) -> str:
    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response.text


@pytest.mark.parametrize("interface", ["internal", "public"])
def test_the_sync_uses_one_interface_and_publishes_for_all(interface, region, source, sync, glance):
    source.add_image(seed=1800)
    source.add_image(release="noble", version="24.04", serial="20261201", seed=1801)
    source.write()
    sync_in(region, sync, interface)

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    assert region.used() == {(service_type, interface) for service_type in SERVICE_TYPES}
    last = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert last["metadata_url"] == region.product_streams_urls()[interface]
    assert last["product_streams_urls"] == region.product_streams_urls()
    public_keystone = region.url("identity", "public")
    assert published_clouds(region, sync) == [[{"region": region.name, "endpoint": public_keystone}], {public_keystone}]
    synced = active_ids(glance, sync.content_id)
    assert len(synced) == 2
    before_lookup = region.connections()[("object-store", "public")]
    assert juju_image_ids(region.product_streams_urls()["public"], region.name, public_keystone) == synced
    assert region.connections()[("object-store", "public")] > before_lookup  # read through the public URL


def test_publish_only_names_the_url_of_each_interface(region, source, sync):
    source.write()
    sync_in(region, sync, "internal")

    result = sync.run([sync.mirror(source.url)], "--publish-only")

    assert result.returncode == 0, result.stderr
    urls = region.product_streams_urls()
    assert result.stdout.splitlines() == [
        f"metadata_url {urls['internal']}",
        f"public_url {urls['public']}",
        f"internal_url {urls['internal']}",
        f"admin_url {urls['admin']}",
    ]
    assert region.used() == {("identity", "internal"), ("object-store", "internal")}
    assert juju_image_ids(urls["public"], region.name, region.url("identity", "public")) == set()


@pytest.mark.parametrize("region", [(("object-store", "admin"),)], indirect=True)
def test_an_interface_the_catalog_lacks_gets_the_url_the_sync_writes_through(region, source, sync):
    result = sync_one_image(region, source, sync, seed=1810)

    assert result.returncode == 0, result.stderr
    written = f"{region.url('object-store', 'internal')}/simplestreams/data"
    last = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert last["product_streams_urls"] == {
        "public": f"{region.url('object-store', 'public')}/simplestreams/data",
        "internal": written,
        "admin": written,
    }
    assert (
        f"WARNING simplestreams_sync.publish: the catalog has no admin object-store endpoint in region "
        f"{region.name}: the product-streams admin URL is {written}, where the sync writes the metadata\n"
    ) in result.stderr


@pytest.mark.parametrize("region", [(("identity", "public"),)], indirect=True)
def test_without_a_public_identity_endpoint_the_metadata_names_the_auth_url_and_says_so(region, source, sync):
    result = sync_one_image(region, source, sync, seed=1820)

    internal_keystone = region.url("identity", "internal")
    assert result.returncode == 0, result.stderr
    assert published_clouds(region, sync) == [
        [{"region": region.name, "endpoint": internal_keystone}],
        {internal_keystone},
    ]
    assert (
        f"WARNING simplestreams_sync.openstack: the catalog has no public identity endpoint in region "
        f"{region.name}: the metadata names {internal_keystone}, the auth URL the sync uses (set "
        "public_auth_url in identity.yaml if Juju's cloud uses another)\n"
    ) in result.stderr


def test_public_auth_url_in_identity_yaml_overrides_the_catalog(region, source, sync, glance):
    juju_cloud_endpoint = "https://keystone.example.com:5000/v3"

    result = sync_one_image(region, source, sync, seed=1830, public_auth_url=juju_cloud_endpoint)

    assert result.returncode == 0, result.stderr
    assert published_clouds(region, sync) == [
        [{"region": region.name, "endpoint": juju_cloud_endpoint}],
        {juju_cloud_endpoint},
    ]
    public_url = region.product_streams_urls()["public"]
    assert juju_image_ids(public_url, region.name, juju_cloud_endpoint + "/") == active_ids(glance, sync.content_id)
    assert juju_image_ids(public_url, region.name, region.url("identity", "public")) == set()


def test_metadata_an_earlier_revision_published_with_the_internal_url_is_republished(region, source, sync, glance):
    """An upgraded unit: its last run (earlier code) published keystone's internal URL and recorded that
    nothing changed; the next run notices the new code, publishes the public URL, then rests."""
    source.add_image(seed=1840)
    source.write()
    mirrors = [sync.mirror(source.url)]
    internal_keystone, public_keystone = region.url("identity", "internal"), region.url("identity", "public")
    sync_in(region, sync, "internal", public_auth_url=internal_keystone)  # what earlier revisions published
    assert sync.run(mirrors).returncode == 0
    assert published_clouds(region, sync)[0] == [{"region": region.name, "endpoint": internal_keystone}]
    sync_in(region, sync, "internal")
    sync.write_files(mirrors)
    record_file = sync.state_dir / quick_check.RECORD_FILE
    record = json.loads(record_file.read_text())
    record.update(code="an earlier revision", inputs=quick_check.input_digests(list(record["inputs"])))
    record_file.write_text(json.dumps(record))

    republished = sync.run(mirrors)
    rested = sync.run(mirrors)

    assert republished.returncode == 0, republished.stderr
    assert QUICK not in republished.stdout
    assert f"published metadata for 1 images to {region.product_streams_urls()['internal']}" in republished.stdout
    assert published_clouds(region, sync) == [[{"region": region.name, "endpoint": public_keystone}], {public_keystone}]
    assert juju_image_ids(region.product_streams_urls()["public"], region.name, public_keystone) == active_ids(
        glance, sync.content_id
    )
    assert QUICK in rested.stdout


def test_a_moved_public_keystone_url_in_the_catalog_is_noticed_and_published(cloud, region, source, sync):
    source.add_image(seed=1850)
    source.write()
    mirrors = [sync.mirror(source.url)]
    sync_in(region, sync, "internal")
    assert sync.run(mirrors).returncode == 0
    assert QUICK in sync.run(mirrors).stdout
    ks = keystone_v3.Client(session=cloud.admin_session(), interface="public")
    (endpoint,) = ks.endpoints.list(
        interface="public", region=region.name, service=ks.services.list(type="identity")[0]
    )
    moved = region.url("identity", "admin")  # another address of the same keystone
    ks.endpoints.update(endpoint, url=moved)

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert QUICK not in result.stdout
    assert published_clouds(region, sync) == [[{"region": region.name, "endpoint": moved}], {moved}]


# -- the charm, its relation with keystone, and the catalog keystone makes of it -------------------


@pytest.mark.parametrize("use_internal_endpoints", [True, False])
def test_the_charm_registers_each_interfaces_url_and_juju_finds_the_images(
    use_internal_endpoints, charm_machine, cloud, region, source, test_key, glance, product_streams_service
):
    source.add_image(release="noble", version="24.04", serial="20261202", seed=1860)
    source.write()
    content_id = f"charm.spaces.{region.name}"
    config = {
        "mirror_list": yaml.safe_dump([{"url": source.url, "path": "streams/v1/index.sjson", "max": 1}]),
        "custom_keyring": base64.b64encode(test_key.keyring.read_bytes()).decode(),
        "region": region.name,
        "content_id_template": content_id,
        "use-internal-endpoints": use_internal_endpoints,
    }
    keystone = testing.Relation(
        "identity-service",
        remote_app_name="keystone",
        remote_units_data={0: region.keystone_answer(keystone_answer(cloud))},
    )
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)

    out = ctx.run(ctx.on.action("sync-images"), testing.State(leader=True, config=config, relations=[keystone]))

    interface = "internal" if use_internal_endpoints else "public"
    assert region.used() == {(service_type, interface) for service_type in SERVICE_TYPES}
    request = out.get_relation(keystone.id).local_unit_data
    expected = region.product_streams_urls()
    assert {key: request[f"{key}_url"] for key in INTERFACES} == expected
    assert request["region"] == region.name
    product_streams_service(request)
    session = cloud.sync_session()  # a new token: the catalog as keystone now lists it
    catalog = {
        interface: session.get_endpoint(service_type="product-streams", interface=interface, region_name=region.name)
        for interface in INTERFACES
    }
    assert catalog == expected
    public_product_streams = catalog["public"]
    public_keystone = region.url("identity", "public")
    (image,) = our_images(glance, content_id)
    assert image["status"] == "active"
    assert juju_image_ids(public_product_streams, region.name, public_keystone) == {image["id"]}


def test_an_upgraded_charm_that_registered_one_url_registers_three(charm_machine, cloud, region, source):
    """An earlier revision registered the URL it published to for every interface; the next hook asks
    the engine for the three (it leaves the published metadata as it is) and registers them."""
    source.write()
    content_id = f"charm.upgraded.{region.name}"
    config = {"region": region.name, "content_id_template": content_id, "use-internal-endpoints": True, "run": False}
    written = region.product_streams_urls()["internal"]
    keystone = testing.Relation(
        "identity-service",
        remote_app_name="keystone",
        local_unit_data={"service": "image-stream", "region": region.name, **{f"{i}_url": written for i in INTERFACES}},
        local_app_data={"metadata_url": written},
        remote_units_data={0: region.keystone_answer(keystone_answer(cloud))},
    )
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)

    out = ctx.run(ctx.on.upgrade_charm(), testing.State(leader=True, config=config, relations=[keystone]))

    request = out.get_relation(keystone.id).local_unit_data
    assert {key: request[f"{key}_url"] for key in INTERFACES} == region.product_streams_urls()
    assert re.findall(r"^# publish-only ", charm_machine.log_file.read_text(), flags=re.M) == ["# publish-only "]
