"""One sync run: read + verify sources -> plan against Glance -> upload verified -> publish -> report."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from .config import IdentityConfig, SyncConfig
from .glance import UNFINISHED_STATUSES, VERIFIED_PROPERTY, GlanceStore, image_properties
from .modify import ModifyHookError, modified_image, run_modify_hook
from .openstack import Cloud, CloudError, image_ids_in_use
from .publish import CONTAINER, PUBLIC_READ_ACL, ObjectStoreMissing, SwiftPublisher, image_ids_tree
from .quick_check import Observations, Record, code_fingerprint, glance_fingerprint, glance_list_url
from .retention import is_protected, plan_retention
from .source import HttpSession, SourceChanged, SourceError, SourceImage, open_url_chunks, read_source
from .state import ProgressFile, SyncResult, utc_now
from .transfer import VerificationError, VerifyingStream

LOG = logging.getLogger(__name__)

Output = Callable[[str], None]
SUPERSEDED = "superseded by a newer version"
DEACTIVATED = (
    "deactivated: never published nor deleted by the sync; reactivate it (openstack image reactivate {id}) or delete it"
)

RESTARTS = 2  # times an image starts again from its first byte when its source cannot resume a download


class ToDelete(NamedTuple):
    """An image to delete once the published metadata no longer names it."""

    image: dict
    reason: str  # why it goes, as the deletion is reported
    waiting: str  # why it is kept when the metadata could not be published


class Progress:
    """Thread-safe progress of a run: item k of N and bytes done of total, kept in progress.json."""

    def __init__(self, progress_file: ProgressFile | None):
        self.file = progress_file
        self.lock = threading.Lock()
        self.bytes_done = 0
        self.items_started = 0

    def phase(self, phase: str, **details) -> None:
        if self.file:
            self.file.update(force=True, phase=phase, **details)

    def start_uploads(self, images: list[SourceImage]) -> None:
        total = sum(image.size or 0 for image in images)
        self.phase("uploading", item_count=len(images), bytes_total=total, item_index=0, bytes_done=0)

    def item_started(self, name: str) -> None:
        with self.lock:
            self.items_started += 1
            if self.file:
                self.file.update(force=True, item=name, item_index=self.items_started)

    def add_bytes(self, count: int) -> None:
        with self.lock:
            self.bytes_done += count
            if self.file:
                self.file.update(bytes_done=self.bytes_done)

    def close(self) -> None:
        if self.file:
            self.file.close()


class SyncRun:
    def __init__(
        self,
        config: SyncConfig,
        identity: IdentityConfig | None,
        *,
        dry_run: bool = False,
        assume_empty_glance: bool = False,
        out: Output = print,
        err: Output = print,
        progress: Progress | None = None,
    ):
        self.config = config
        self.identity = identity
        self.dry_run = dry_run
        self.assume_empty_glance = assume_empty_glance
        self.out = out
        self.err = err
        self.progress = progress or Progress(None)
        self.result = SyncResult(started=utc_now(), dry_run=dry_run)
        self.observed = Observations()  # what the next run's quick check will compare
        self.http = HttpSession(
            config.user_agent, proxies=config.source_proxy.for_requests() or None, observations=self.observed
        )
        self.content_id = config.content_id
        self._result_lock = threading.Lock()
        self._names: dict[tuple, str] = {}  # Glance name of each source image, by SourceImage.key
        self._unreadable_mirrors: list[str] = []
        self._mismatched: list[tuple[dict, str]] = []  # active images of ours whose bytes are not the source's
        self._in_use: set[str] | None = None  # ids of images Nova servers use, asked once per run
        # Set when this run leaves something a later run may settle differently (an image kept because
        # it is in use, one that cannot be verified): the next run must then not skip the full sync.
        self._unsettled = False
        # What this run said about images it leaves as they are for as long as Glance stays as it is:
        # a quick check repeats it.
        self._settled_lines: list[str] = []
        self.record: Record | None = None  # what a clean run observed, for the quick check
        self._cloud: Cloud | None = None  # once the run has authenticated
        self._glance: GlanceStore | None = None

    @property
    def cloud(self) -> Cloud:
        assert self._cloud is not None, "only once the run has authenticated"
        return self._cloud

    @property
    def glance(self) -> GlanceStore:
        assert self._glance is not None, "only once the run has authenticated"
        return self._glance

    def run(self) -> SyncResult:
        started = time.monotonic()
        try:
            desired = self._read_sources()
            if self.assume_empty_glance:
                self._report_would_create(desired)
            else:
                self._sync_with_cloud(desired)
        finally:
            self.result.finished = utc_now()
            self.result.duration_seconds = round(time.monotonic() - started, 3)
        return self.result

    # -- source -----------------------------------------------------------------------------------
    def _read_sources(self) -> list[SourceImage]:
        self.progress.phase("reading sources")
        desired: dict[tuple, SourceImage] = {}
        for mirror in self.config.mirror_list:
            try:
                images = read_source(mirror, self.config.keyring_for(mirror), self.http)
            except SourceError as error:
                self._error(f"mirror {mirror.url}: {error}")
                self._unreadable_mirrors.append(mirror.url)
                continue
            prefix = self.config.prefix_for(mirror)
            for image in images:
                if image.key not in desired:  # the first mirror listing an item names it
                    desired[image.key] = image
                    self._names[image.key] = prefix + image.pubname
        return list(desired.values())

    # -- glance -----------------------------------------------------------------------------------
    def _sync_with_cloud(self, desired: list[SourceImage]) -> None:
        self.progress.phase("checking glance")
        try:
            assert self.identity is not None, "only --assume-empty-glance runs without identity.yaml"
            cloud = Cloud(self.identity, self.config.object_store_proxies())
            if self.config.use_swift and not self.dry_run:
                threading.Thread(target=SwiftPublisher.warm_up, args=(cloud,), daemon=True).start()
            glance = GlanceStore(cloud)
            self._cloud, self._glance = cloud, glance
            owned = glance.owned_images(self.content_id)
            hash_algo = glance.hash_algo(owned)
        except CloudError as error:
            self._error(str(error))
            return
        verified = self._settle_existing(owned)
        have = {_image_key(image) for image in verified}
        missing = [image for image in desired if image.key not in have]
        if self.dry_run:
            self._report_would_create(missing)
            for image in self._plan_retention(desired, verified):
                self._delete(image, SUPERSEDED)
            return
        created = self._upload_all(missing, hash_algo)
        verified.extend(created)
        superseded = self._plan_retention(desired, verified)
        superseded_ids = {image["id"] for image in superseded}
        remaining = [image for image in verified if image["id"] not in superseded_ids]
        to_delete = [
            ToDelete(image, SUPERSEDED, "superseded, kept until metadata without it is published")
            for image in superseded
        ] + self._deletable_mismatches()
        if self.config.set_latest_property:
            self._mark_latest(remaining)
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Glance as this run leaves it, for the next run's quick check: listed while publishing, or
            # once the images to delete are gone.
            final_listing = (
                pool.submit(glance.owned_images, self.content_id) if self._clean() and not to_delete else None
            )
            publisher = self._publish(remaining) if self.config.use_swift else None
            self._retire(to_delete, metadata_updated=publisher is not None or not self.config.use_swift)
            if to_delete and self._clean():
                final_listing = pool.submit(glance.owned_images, self.content_id)
        if final_listing is not None and self._clean():
            self._record_observations(final_listing, publisher, len(remaining))

    def _settle_existing(self, owned: list[dict]) -> list[dict]:
        """Delete what an interrupted run left, adopt unmarked active images if their bytes check out,
        name the deactivated ones; return the verified images."""
        verified = []
        for image in owned:
            status = image.get("status")
            if status in UNFINISHED_STATUSES and is_protected(image):
                reason = (
                    f"left {status} by an interrupted sync, but protected: unprotect it "
                    f"(openstack image set --unprotected {image['id']}) and the next sync deletes it"
                )
                self._kept(image, reason, settled=True, warning=True)
                self._needs_decision(image, reason)
            elif status in UNFINISHED_STATUSES:
                self._delete(image, f"left {status} by an interrupted sync")
            elif status == "deactivated":
                self._deactivated(image)
            elif status == "active" and (image.get(VERIFIED_PROPERTY) or (not self.dry_run and self._adopt(image))):
                verified.append(image)
        return verified

    def _adopt(self, image: dict) -> bool:
        """An active image of ours without the verified mark (a run died before marking it, or an
        older tool made it): hash what Glance serves and keep it only if it matches the source."""
        expected = _expected_source_digest(image)
        if expected is None:
            LOG.warning(
                "image %s (%s) has no source checksum to verify; left alone, not published",
                image["id"],
                image.get("name"),
            )
            self._unsettled = True
            return False
        try:
            actual = self.glance.stored_digest(image["id"], expected.split(":")[0])
        except CloudError as error:
            self._error(f"could not verify existing image {image['id']}: {error}")
            return False
        if actual != expected:
            self._mismatched.append((image, f"its bytes ({actual}) do not match the source ({expected})"))
            return False
        self.glance.mark_verified(image["id"], expected)
        image[VERIFIED_PROPERTY] = expected
        return True

    def _delete(self, image: dict, reason: str) -> bool:
        """Delete one of our images and say so; True when it is gone."""
        if self.dry_run:
            self.out(f"would delete {image['id']}: {image.get('name')} ({reason})")
            return False
        try:
            self.glance.delete(image["id"])
        except CloudError as error:
            self._error(f"could not delete image {image['id']} ({reason}): {error}")
            return False
        self.out(f"deleted {image['id']}: {image.get('name')} ({reason})")
        self.result.deleted.append({"id": image["id"], "name": image.get("name"), "reason": reason})
        return True

    def _kept(self, image: dict, reason: str, settled: bool, warning: bool = False) -> None:
        """Report an image that is not deleted although not wanted. `settled`: it stays kept for the same
        reason for as long as Glance and the sources stay as they are (the quick check watches those)."""
        line = f"kept {image['id']}: {image.get('name')} ({reason})"
        self._say(f"warning: {line}" if warning else line, settled)
        with self._result_lock:
            self.result.kept.append({"id": image["id"], "name": image.get("name"), "reason": reason})

    def _deactivated(self, image: dict) -> None:
        reason = DEACTIVATED.format(id=image["id"])
        self._say(f"warning: {image['id']}: {image.get('name')} needs an operator's decision ({reason})", settled=True)
        self._needs_decision(image, reason)

    def _needs_decision(self, image: dict, reason: str) -> None:
        with self._result_lock:
            self.result.needs_decision.append({"id": image["id"], "name": image.get("name"), "reason": reason})

    def _say(self, line: str, settled: bool) -> None:
        self.out(line)
        if settled:
            self._settled_lines.append(line)
        else:
            self._unsettled = True

    def _report_would_create(self, images: list[SourceImage]) -> None:
        for image in images:
            name = self._names[image.key]
            self.out(f"would create {image.product_name} {image.version_name} {image.item_name}: {name}")
            self.result.would_create.append(
                {"product": image.product_name, "version": image.version_name, "item": image.item_name, "name": name}
            )

    # -- upload -----------------------------------------------------------------------------------
    def _upload_all(self, images: list[SourceImage], hash_algo: str) -> list[dict]:
        self.progress.start_uploads(images)
        with ThreadPoolExecutor(max_workers=self.config.max_parallel) as pool:
            stored = list(pool.map(lambda image: self._upload_one(image, hash_algo), images))
        return [image for image in stored if image is not None]

    def _upload_one(self, image: SourceImage, hash_algo: str) -> dict | None:
        name = self._names[image.key]
        self.progress.item_started(name)
        try:
            if self.config.modify_hook:
                stored = self._upload_modified(image, name, hash_algo, self.config.modify_hook)
            else:
                properties = image_properties(
                    image, self.content_id, self.config.custom_properties, self.config.hypervisor_mapping
                )
                stored = self._upload_from(image, name, properties, hash_algo)
        except (SourceError, VerificationError, CloudError, ModifyHookError) as error:
            self._failed(name, str(error))
            return None
        except Exception as error:
            LOG.exception("unexpected error uploading %s", name)
            self._failed(name, f"{type(error).__name__}: {error}")
            return None
        with self._result_lock:
            self.result.created.append({"id": stored["id"], "name": name})
            self.result.bytes_transferred += stored.get("size") or 0
        self.out(f"created {stored['id']}: {name}")
        return stored

    def _upload_from(self, image: SourceImage, name: str, properties: dict, hash_algo: str) -> dict:
        """Stream `image.url` into Glance, verified on the way; from the first byte again, into a new
        Glance image, when the source cannot resume a dropped download."""
        convert_timeout = self.config.import_timeout if self.config.image_import_conversion else None
        restarts = 0
        while True:
            chunks, close = open_url_chunks(image.url, self.http)
            stream = None
            try:
                stream = VerifyingStream(image, chunks, hash_algo, on_bytes=self.progress.add_bytes)
                return self.glance.upload(image, name, properties, self.config.visibility, stream, convert_timeout)
            except SourceChanged as error:
                self.progress.add_bytes(-stream.size if stream else 0)
                if restarts == RESTARTS:
                    raise SourceChanged(f"{error} (after {RESTARTS} restarts)") from None
                restarts += 1
                self.out(f"restarting {name} from its first byte: {error}")
            finally:
                close()

    def _upload_modified(self, image: SourceImage, name: str, hash_algo: str, modify_hook: str) -> dict:
        """The image-modifier case: a verified local copy goes through the script, then to Glance."""
        with tempfile.TemporaryDirectory(prefix="gss-modify-") as workdir:
            local = Path(workdir) / "image"
            chunks, close = open_url_chunks(image.url, self.http)
            try:
                with open(local, "wb") as copy:
                    for chunk in VerifyingStream(image, chunks, "sha256"):
                        copy.write(chunk)
            finally:
                close()
            run_modify_hook(modify_hook, local, image.metadata)
            modified = modified_image(image, local)
            properties = image_properties(
                modified, self.content_id, self.config.custom_properties, self.config.hypervisor_mapping
            )
            return self._upload_from(modified, name, properties, hash_algo)

    # -- after upload -----------------------------------------------------------------------------
    def _plan_retention(self, desired: list[SourceImage], verified: list[dict]) -> list[dict]:
        """Say which images are kept although not selected, and why; return the superseded ones to delete
        (never protected or in-use ones)."""
        all_read = not self._unreadable_mirrors
        plan = plan_retention(desired, verified, in_use=set(), all_sources_read=all_read)
        if plan.delete:
            try:
                plan = plan_retention(desired, verified, in_use=self._images_in_use(), all_sources_read=all_read)
            except CloudError as error:
                self._error(f"superseded images not deleted: {error}")
                return []
        for kept in plan.keep:
            self._kept(kept.image, kept.reason, kept.settled)
        return plan.delete

    def _deletable_mismatches(self) -> list[ToDelete]:
        """The images whose bytes do not match the source that may go; a protected or used one stays,
        with a warning, and is never published."""
        deletable = []
        for image, mismatch in self._mismatched:
            if is_protected(image):
                unprotect = (
                    f"unprotect it (openstack image set --unprotected {image['id']}) and the next sync deletes it"
                )
                self._kept(
                    image,
                    f"{mismatch}; protected, so not deleted and not published: {unprotect}",
                    settled=True,
                    warning=True,
                )
                self._needs_decision(image, f"protected, but its bytes do not match the source: {unprotect}")
            else:
                deletable.append(
                    ToDelete(
                        image,
                        mismatch,
                        "its bytes do not match the source, kept until metadata without it is published",
                    )
                )
        if not deletable:
            return []
        try:
            in_use = self._images_in_use()
        except CloudError as error:
            self._error(f"images whose bytes do not match the source not deleted: {error}")
            return []
        for used in [candidate for candidate in deletable if candidate.image["id"] in in_use]:
            self._kept(
                used.image,
                f"{used.reason}; in use by a server, so not deleted and not published until no server uses it",
                settled=False,
                warning=True,
            )
            deletable.remove(used)
        return deletable

    def _images_in_use(self) -> set[str]:
        if self._in_use is None:
            self._in_use = image_ids_in_use(self.cloud)
        return self._in_use

    def _retire(self, to_delete: list[ToDelete], metadata_updated: bool) -> None:
        """Delete the images once the published metadata no longer names them: readers of
        the metadata never get the id of a deleted image."""
        for image, reason, waiting in to_delete:
            if metadata_updated:
                self._delete(image, reason)
            else:
                self._kept(image, waiting, settled=False)

    def _mark_latest(self, images: list[dict]) -> None:
        """`latest=true` on the newest image of each source + os_version + architecture, off the others."""
        newest: dict[tuple, dict] = {}
        for image in images:
            group = (image.get("source_content_id"), image.get("os_version"), image.get("architecture"))
            if group not in newest or image["version_name"] > newest[group]["version_name"]:
                newest[group] = image
        latest_ids = {image["id"] for image in newest.values()}
        for image in images:
            try:
                if image["id"] in latest_ids and image.get("latest") != "true":
                    self.glance.set_properties(image["id"], latest="true")
                elif image["id"] not in latest_ids and "latest" in image:
                    self.glance.remove_properties(image["id"], "latest")
            except CloudError as error:
                self._error(f"could not update the latest property of {image['id']}: {error}")

    def _publish(self, images: list[dict]) -> SwiftPublisher | None:
        self.progress.phase("publishing metadata")
        try:
            publisher = SwiftPublisher(self.cloud, self.observed)
            tree = image_ids_tree(
                self.content_id, images, self.cloud.region, self.cloud.auth_url, self.config.hypervisor_mapping
            )
            changed = publisher.publish(tree, self.config.cloud_name)
        except CloudError as error:
            self.result.object_store_missing = isinstance(error, ObjectStoreMissing)
            self._error(f"metadata not published: {error}")
            return None
        self.result.published = True
        self.result.metadata_url = publisher.metadata_url
        if publisher.repaired_acl is not None:
            self.out(
                f"repaired the read ACL of container {CONTAINER}: it was {publisher.repaired_acl!r}, "
                f"anonymous readers need {PUBLIC_READ_ACL!r}"
            )
        if changed:
            self.out(f"published metadata for {len(images)} images to {publisher.metadata_url}")
        else:
            self.out(f"metadata for {len(images)} images at {publisher.metadata_url} is up to date")
        return publisher

    def _record_observations(
        self,
        final_listing: Future,
        publisher: SwiftPublisher | None,
        image_count: int,
    ) -> None:
        """After a clean run, what the next run's quick check compares (quick_check.py)."""
        try:
            images = final_listing.result()
        except CloudError as error:
            LOG.info("no quick check for the next run: %s", error)
            return
        observed = self.observed
        identity = self.cloud.identity
        self.record = Record(
            code=code_fingerprint(),
            inputs={},
            user_agent=self.config.user_agent,
            source=[{"url": url, **document} for url, document in observed.source.items()],
            identity_file="",
            keystone={
                "token_url": identity.auth_url.rstrip("/") + "/auth/tokens",  # as keystoneauth's v3.Password
                "user": identity.username,
                "user_domain": identity.user_domain_name,
                "project": identity.project_name,
                "project_domain": identity.project_domain_name,
            },
            verify=self.cloud.verify,
            glance_list_url=glance_list_url(self.glance.endpoint, self.cloud.project_id, self.content_id),
            glance_images=glance_fingerprint(images, self.content_id, self.cloud.project_id),
            content_id=self.content_id,
            project_id=self.cloud.project_id,
            swift_objects=observed.objects,
            swift_container=observed.container_url,
            swift_read_acl=observed.read_acl,
            swift_proxy=self.cloud.object_store_proxy(publisher.storage_url) if publisher else None,
            metadata_url=publisher.metadata_url if publisher else "",
            image_count=image_count,
            said=self._settled_lines,
            kept=self.result.kept,
            needs_decision=self.result.needs_decision,
        )

    def _clean(self) -> bool:
        """Nothing failed so far and nothing is left for a later run: what the quick check needs."""
        return self.result.ok and not self._unsettled

    # -- reporting --------------------------------------------------------------------------------
    def _error(self, message: str) -> None:
        with self._result_lock:
            self.result.errors.append(message)
        self.err(f"error: {message}")

    def _failed(self, name: str, message: str) -> None:
        with self._result_lock:
            self.result.failed.append({"name": name, "error": message})
        self.err(f"failed {name}: {message}")


def _image_key(image: dict) -> tuple:
    return (
        image.get("source_content_id"),
        image.get("product_name"),
        image.get("version_name"),
        image.get("item_name"),
    )


def _expected_source_digest(image: dict) -> str | None:
    try:
        metadata = json.loads(image.get("simplestreams_metadata") or "{}")
    except ValueError:
        return None
    for algo in ("sha256", "md5"):
        if metadata.get(algo):
            return f"{algo}:{metadata[algo].lower()}"
    return None
