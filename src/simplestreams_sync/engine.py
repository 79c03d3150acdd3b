"""One sync run: read + verify sources -> plan against Glance -> upload verified -> publish -> report."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from . import verdicts
from .config import IdentityConfig, SyncConfig
from .glance import GlanceStore, ImageInUseByStore, image_properties
from .modify import ModifyHookError, modified_image, run_modify_hook
from .openstack import Cloud, CloudError, image_ids_in_use
from .plan import Facts, GlanceImage, Plan, make_plan
from .publish import CONTAINER, PUBLIC_READ_ACL, ObjectStoreMissing, Publisher, SwiftPublisher, image_ids_tree
from .publish_local import LocalPublisher
from .quick_check import Observations, Record
from .run_record import record_of_clean_run
from .source import HttpSession, SourceChanged, SourceError, SourceImage, open_url_chunks, read_source
from .state import ProgressFile, SyncResult, utc_now
from .transfer import VerificationError, VerifyingStream

LOG = logging.getLogger(__name__)

Output = Callable[[str], None]

RESTARTS = 2  # times an image starts again from its first byte when its source cannot resume a download


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
            if self.config.publishes_to_swift and not self.dry_run:
                threading.Thread(target=SwiftPublisher.warm_up, args=(cloud,), daemon=True).start()
            glance = GlanceStore(cloud)
            self._cloud, self._glance = cloud, glance
            listed = glance.owned_images(self.content_id)
            hash_algo = glance.hash_algo(listed)
        except CloudError as error:
            self._error(str(error))
            return
        owned = tuple(GlanceImage.from_glance(image) for image in listed)
        facts = Facts(
            desired=tuple(desired),
            owned=owned,
            all_sources_read=not self._unreadable_mirrors,
            mismatched=verdicts.remembered_mismatches(self.config.state_dir, owned),
        )
        if self.dry_run:
            self._report_plan(make_plan(self._with_servers_in_use(facts)))
            return
        facts = self._settle_existing(facts)
        created = self._upload_all(make_plan(facts).upload, hash_algo)
        facts = self._with_servers_in_use(replace(facts, owned=facts.owned + tuple(created)))
        plan = make_plan(facts)
        if self.config.set_latest_property:
            self._mark_latest(plan.publish)
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Glance as this run leaves it, for the next run's quick check: listed while publishing when
            # nothing changes it after that, or once the images to delete are gone.
            changes_after_publish = plan.delete_after_publish or plan.hide or plan.unhide
            final_listing = (
                pool.submit(glance.owned_images, self.content_id)
                if self._clean(plan) and not changes_after_publish
                else None
            )
            publisher = self._publish(plan.publish) if self.config.publishes_metadata else None
            facts = replace(facts, metadata_published=publisher is not None or not self.config.publishes_metadata)
            plan = self._carry_out(facts)
            if changes_after_publish and self._clean(plan):
                final_listing = pool.submit(glance.owned_images, self.content_id)
        if final_listing is not None and self._clean(plan):
            self._record_observations(final_listing, publisher, len(plan.publish))

    def _with_servers_in_use(self, facts: Facts) -> Facts:
        """The facts with which images Nova's servers use, when the plan depends on that (asked once)."""
        if facts.servers_use is not None or facts.servers_unknown or not make_plan(facts).ask_servers:
            return facts
        try:
            return replace(facts, servers_use=frozenset(image_ids_in_use(self.cloud)))
        except CloudError as error:
            self._error(f"superseded images not deleted: {error}")
            return replace(facts, servers_unknown=True)

    def _settle_existing(self, facts: Facts) -> Facts:
        """Delete what an interrupted run left, and hash the unmarked active images of ours (a run died
        before marking them, or an older tool made them): the facts with what that found."""
        plan = make_plan(facts)
        gone = {
            deletion.image.id for deletion in plan.delete_now if self._delete(deletion.image, deletion.reason) is True
        }
        adopted, mismatched, not_verified = set(), {}, set()
        for image in plan.adopt:
            assert image.source_digest is not None
            try:
                actual = self.glance.stored_digest(image.id, image.source_digest.split(":")[0])
                matches = actual == image.source_digest
                if matches:
                    self.glance.mark_verified(image.id, image.source_digest)
            except CloudError as error:
                self._error(f"could not verify existing image {image.id}: {error}")
                not_verified.add(image.id)
                continue
            if matches:
                adopted.add(image.id)
            else:
                mismatched[image.id] = f"its bytes ({actual}) do not match the source ({image.source_digest})"
        mismatched = {**facts.mismatched, **mismatched}
        verdicts.remember(self.config.state_dir, facts.owned, mismatched)
        return replace(
            facts,
            owned=tuple(image for image in facts.owned if image.id not in gone),
            adopted=frozenset(adopted),
            mismatched=mismatched,
            not_verified=frozenset(not_verified),
        )

    def _carry_out(self, facts: Facts) -> Plan:
        """Delete what the published metadata no longer names, hide what is kept only because it is in
        use, say what is kept and why; return the plan as it stands after what the deletions answered."""
        plan = make_plan(facts)
        refused = {
            deletion.image.id
            for deletion in plan.delete_after_publish
            if self._delete(deletion.image, deletion.reason) is ImageInUseByStore
        }
        if refused:
            plan = make_plan(replace(facts, store_uses=frozenset(refused)))
        for image in plan.hide:
            self._set_hidden(image, True)
        for image in plan.unhide:
            self._set_hidden(image, False)
        self._report_kept(plan)
        return plan

    def _set_hidden(self, image: GlanceImage, hidden: bool) -> None:
        try:
            self.glance.set_hidden(image.id, hidden)
        except CloudError as error:
            self._error(f"could not {'hide' if hidden else 'show'} image {image.id}: {error}")

    def _delete(self, image: GlanceImage, reason: str) -> bool | type[ImageInUseByStore]:
        """Delete one of our images and say so; True when it is gone, ImageInUseByStore when the image
        store refused because it still uses it."""
        try:
            self.glance.delete(image.id)
        except ImageInUseByStore:
            return ImageInUseByStore
        except CloudError as error:
            self._error(f"could not delete image {image.id} ({reason}): {error}")
            return False
        self.out(f"deleted {image.id}: {image.name} ({reason})")
        self.result.deleted.append({"id": image.id, "name": image.name, "reason": reason})
        return True

    def _report_kept(self, plan: Plan) -> None:
        """Say what the run keeps and leaves to an operator, and record it in the result."""
        for image in plan.unverifiable:
            LOG.warning(
                "image %s (%s) has no source checksum to verify; left alone, not published", image.id, image.name
            )
        for kept in plan.keep:
            line = f"kept {kept.image.id}: {kept.image.name} ({kept.reason})"
            self._say(f"warning: {line}" if kept.warning else line, kept.settled)
            self.result.kept.append({"id": kept.image.id, "name": kept.image.name, "reason": kept.reason})
        for decision in plan.needs_decision:
            image = decision.image
            if decision.announce:
                self._say(f"warning: {image.id}: {image.name} needs an operator's decision ({decision.reason})", True)
            self.result.needs_decision.append({"id": image.id, "name": image.name, "reason": decision.reason})

    def _report_plan(self, plan: Plan) -> None:
        """A dry run: what a real run would do, as far as it can be known without changing anything."""
        for deletion in plan.delete_now:
            self.out(f"would delete {deletion.image.id}: {deletion.image.name} ({deletion.reason})")
        for image in plan.adopt:
            self.out(f"would adopt {image.id}: {image.name} (once its bytes are found to match the source)")
        self._report_would_create(plan.upload)
        for deletion in plan.delete_after_publish:
            self.out(f"would delete {deletion.image.id}: {deletion.image.name} ({deletion.reason})")
        for image in plan.hide:
            self.out(f"would hide {image.id}: {image.name}")
        for image in plan.unhide:
            self.out(f"would show {image.id}: {image.name} again")
        self._report_kept(plan)

    def _say(self, line: str, settled: bool) -> None:
        self.out(line)
        if settled:
            self._settled_lines.append(line)

    def _report_would_create(self, images: list[SourceImage]) -> None:
        for image in images:
            name = self._names[image.key]
            self.out(f"would create {image.product_name} {image.version_name} {image.item_name}: {name}")
            self.result.would_create.append(
                {"product": image.product_name, "version": image.version_name, "item": image.item_name, "name": name}
            )

    # -- upload -----------------------------------------------------------------------------------
    def _upload_all(self, images: list[SourceImage], hash_algo: str) -> list[GlanceImage]:
        self.progress.start_uploads(images)
        with ThreadPoolExecutor(max_workers=self.config.max_parallel) as pool:
            stored = list(pool.map(lambda image: self._upload_one(image, hash_algo), images))
        return [GlanceImage.from_glance(image) for image in stored if image is not None]

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

    def _upload_modified(self, image: SourceImage, name: str, hash_algo: str, modify_hook: list[str]) -> dict:
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
    def _mark_latest(self, images: list[GlanceImage]) -> None:
        """`latest=true` on the newest image of each source + os_version + architecture, off the others."""
        newest: dict[tuple, GlanceImage] = {}
        for image in images:
            group = (image.source_content_id, image.properties.get("os_version"), image.properties.get("architecture"))
            if group not in newest or image.version_name > newest[group].version_name:
                newest[group] = image
        latest_ids = {image.id for image in newest.values()}
        for image in images:
            try:
                if image.id in latest_ids and image.properties.get("latest") != "true":
                    self.glance.set_properties(image.id, latest="true")
                elif image.id not in latest_ids and "latest" in image.properties:
                    self.glance.remove_properties(image.id, "latest")
            except CloudError as error:
                self._error(f"could not update the latest property of {image.id}: {error}")

    def _publisher(self) -> Publisher:
        """The unit's own web server when the charm serves the metadata, else Swift."""
        local = self.config.local_metadata
        if local is not None:
            cloud = self.cloud
            return LocalPublisher(
                local.directory, local.url, cloud.region, cloud.public_auth_url, cloud.verify, self.observed
            )
        return SwiftPublisher(self.cloud, self.observed)

    def _publish(self, images: list[GlanceImage]) -> Publisher | None:
        self.progress.phase("publishing metadata")
        try:
            publisher = self._publisher()
            tree = image_ids_tree(
                self.content_id,
                [dict(image.properties) for image in images],
                self.cloud.region,
                self.cloud.public_auth_url,
                self.config.hypervisor_mapping,
            )
            changed = publisher.publish(tree, self.config.cloud_name)
        except CloudError as error:
            self.result.object_store_missing = isinstance(error, ObjectStoreMissing)
            self._error(f"metadata not published: {error}")
            return None
        self.result.published = True
        self.result.metadata_url = publisher.metadata_url
        if isinstance(publisher, SwiftPublisher):
            self.result.product_streams_urls = publisher.product_streams_urls()
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

    def _record_observations(self, final_listing: Future, publisher: Publisher | None, image_count: int) -> None:
        """After a clean run, what the next run's quick check compares (quick_check.py)."""
        self.record = record_of_clean_run(
            self.cloud,
            self.glance.endpoint,
            final_listing,
            self.observed,
            user_agent=self.config.user_agent,
            content_id=self.content_id,
            storage_url=publisher.storage_url if isinstance(publisher, SwiftPublisher) else None,
            metadata_url=publisher.metadata_url if publisher else "",
            result=self.result,
            image_count=image_count,
            said=self._settled_lines,
        )

    def _clean(self, plan: Plan) -> bool:
        """Nothing failed so far and nothing is left for a later run: what the quick check needs."""
        return self.result.ok and plan.settled

    # -- reporting --------------------------------------------------------------------------------
    def _error(self, message: str) -> None:
        with self._result_lock:
            self.result.errors.append(message)
        self.err(f"error: {message}")

    def _failed(self, name: str, message: str) -> None:
        with self._result_lock:
            self.result.failed.append({"name": name, "error": message})
        self.err(f"failed {name}: {message}")
