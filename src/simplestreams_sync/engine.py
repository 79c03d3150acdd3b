"""One sync run, as its phases: observe (the sources, our images in Glance) -> plan -> act.

plan.py decides everything from the `Facts`. Each effect whose answer can change a decision is a step
that returns the Facts with that answer added (`_settle_existing`, `_upload_new`, `_with_servers_in_use`,
`_publish`, `_delete_unpublished`), and the plan is made again from them where the next step reads it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from . import in_flight, verdicts
from .config import IdentityConfig, SyncConfig
from .glance_effects import adopt, delete, hide_and_show, mark_latest
from .image_listing import ImageInUseByStore, glance_endpoint, listed_hash_algo, owned_images
from .openstack import Cloud, CloudError, image_ids_in_use
from .plan import Facts, GlanceImage, Plan, make_plan
from .publish import Publisher, SwiftPublisher
from .publishing import publish_images
from .quick_check import Observations, Record
from .report import Output, RunReport
from .run_record import record_of_clean_run
from .source import HttpSession, SourceImage, read_mirrors
from .state import SyncResult, utc_now
from .upload import RunProgress, Uploader

if TYPE_CHECKING:  # glanceclient loads with the first change to Glance: listing it needs none
    from .glance import GlanceStore


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
        progress: RunProgress | None = None,
        stop_reason: Callable[[], str | None] = lambda: None,
    ):
        self.config, self.identity = config, identity
        self.stop_reason = stop_reason  # why to stop at the next safe point; None: go on
        self.dry_run = dry_run
        self.assume_empty_glance = assume_empty_glance
        self.progress = progress or RunProgress(None)
        self.report = RunReport(dry_run, out, err)
        self.observed = Observations()  # what the next run's quick check will compare
        proxies = config.source_proxy.for_requests() or None
        self.http = HttpSession(config.user_agent, proxies=proxies, observations=self.observed)
        self._names: dict[tuple, str] = {}  # Glance name of each source image, by SourceImage.key
        self._all_sources_read = True
        self.record: Record | None = None  # what a clean run observed, for the quick check
        self.cloud: Cloud  # once the run has authenticated
        self.glance_endpoint = ""
        self._swift_warm_up: threading.Thread | None = None

    def run(self) -> SyncResult:
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                listing = None if self.assume_empty_glance else pool.submit(self._login_and_list)
                desired = self._read_sources()
                if listing is None:
                    self.report.would_create(desired, self._names)
                else:
                    self._sync_with_cloud(desired, listing)
        finally:
            self.report.result.finished = utc_now()
            self.report.result.duration_seconds = round(time.monotonic() - started, 3)
        return self.report.result

    # -- observe ----------------------------------------------------------------------------------
    def _read_sources(self) -> list[SourceImage]:
        self.progress.phase("reading sources")
        desired, self._names, self._all_sources_read = read_mirrors(self.config, self.http, self.report.error)
        return desired

    def _login_and_list(self) -> tuple[list[dict], datetime]:
        """Log in and list our images in Glance, while the sources are read: the listing and its time."""
        assert self.identity is not None, "only --assume-empty-glance runs without identity.yaml"
        self.cloud = Cloud(self.identity, self.config.object_store_proxies())
        if self.config.publishes_to_swift and not self.dry_run:
            self._swift_warm_up = SwiftPublisher.start_warm_up(self.cloud)
        self.glance_endpoint = glance_endpoint(self.cloud)
        return owned_images(self.cloud, self.glance_endpoint, self.config.content_id), datetime.now(timezone.utc)

    @functools.cached_property
    def glance(self) -> GlanceStore:
        from .glance import GlanceStore

        return GlanceStore(self.cloud)

    def _observe_glance(self, desired: list[SourceImage], listing: Future) -> tuple[Facts, str] | None:
        """The facts as Glance lists our images, and the hash algorithm it uses; None when it cannot be asked."""
        self.progress.phase("checking glance")
        try:
            listed, listed_at = listing.result()
            hash_algo = listed_hash_algo(listed) or self.glance.hash_algo(listed)
        except CloudError as error:
            self.report.error(str(error))
            return None
        owned = tuple(GlanceImage.from_glance(image) for image in listed)
        mismatched = verdicts.remembered_mismatches(self.config.state_dir, owned)
        convert_timeout = self.config.import_timeout if self.config.image_import_conversion else None
        in_flight_quiet = in_flight.quiet_limit(convert_timeout)
        facts = Facts(tuple(desired), owned, self._all_sources_read, mismatched=mismatched)
        return replace(facts, now=listed_at, in_flight_quiet=in_flight_quiet), hash_algo

    # -- plan and act -----------------------------------------------------------------------------
    def _sync_with_cloud(self, desired: list[SourceImage], listing: Future) -> None:
        observed = self._observe_glance(desired, listing)
        if observed is None:
            return
        facts, hash_algo = observed
        if self.dry_run:
            self.report.plan(make_plan(self._with_servers_in_use(facts)), self._names)
            return
        if self.report.stopped(self.stop_reason()):  # nothing more is done
            return
        facts = self._upload_new(self._settle_existing(facts), hash_algo)
        if self.report.stopped(self.stop_reason()):  # nothing more is done
            return
        facts = self._with_servers_in_use(facts)
        plan = make_plan(facts)  # what to publish, and whether anything changes Glance after that
        if self.config.set_latest_property:
            mark_latest(self.glance, plan.publish, self.report)
        changes_after_publish = bool(plan.delete_after_publish or plan.hide or plan.unhide)
        with ThreadPoolExecutor(max_workers=1) as pool:
            # Glance as this run leaves it, for the next run's quick check: listed while publishing when
            # nothing changes it after that, or once the images to delete are gone.
            final_listing = self._list_if_clean(pool, plan) if not changes_after_publish else None
            facts, publisher = self._publish(facts, plan.publish)
            plan = make_plan(self._delete_unpublished(facts))  # what is kept, hidden, shown again
            if plan.hide or plan.unhide:
                hide_and_show(self.glance, plan, self.report)
            self.report.kept(plan)
            if changes_after_publish:
                final_listing = self._list_if_clean(pool, plan)
        if final_listing is not None and self._clean(plan):
            self._record(final_listing, publisher, len(plan.publish))

    def _settle_existing(self, facts: Facts) -> Facts:
        """Delete what an interrupted run left and adopt what it did not mark: the facts with what that found."""
        plan = make_plan(facts)
        # self.glance (glanceclient) is touched only when there is something to delete or adopt.
        gone = {d.image.id for d in plan.delete_now if delete(self.glance, d.image, d.reason, self.report) is True}
        adopted, mismatched, not_verified = (
            adopt(self.glance, plan.adopt, self.report) if plan.adopt else (set(), {}, set())
        )
        mismatched = {**facts.mismatched, **mismatched}
        verdicts.remember(self.config.state_dir, facts.owned, mismatched)
        owned = tuple(image for image in facts.owned if image.id not in gone)
        return replace(facts, owned=owned, adopted=frozenset(adopted), mismatched=mismatched,
                       not_verified=frozenset(not_verified))  # fmt: skip

    def _upload_new(self, facts: Facts, hash_algo: str) -> Facts:
        """Upload what the plan says is missing, `max_parallel` at a time: the facts with what was created."""
        images = make_plan(facts).upload
        self.progress.start_uploads(images)
        if not images:
            return facts
        uploader = Uploader(
            self.glance, self.http, self.config, hash_algo, self.progress, self.report, self.stop_reason
        )
        with ThreadPoolExecutor(max_workers=self.config.max_parallel) as pool:
            stored = pool.map(lambda image: uploader.upload_reported(image, self._names[image.key]), images)
            created = tuple(GlanceImage.from_glance(image) for image in stored if image is not None)
        return replace(facts, owned=facts.owned + created)

    def _with_servers_in_use(self, facts: Facts) -> Facts:
        """The facts with which images Nova's servers use, when the plan depends on that (asked once)."""
        if facts.servers_use is not None or facts.servers_unknown or not make_plan(facts).ask_servers:
            return facts
        try:
            return replace(facts, servers_use=frozenset(image_ids_in_use(self.cloud)))
        except CloudError as error:
            self.report.error(f"superseded images not deleted: {error}")
            return replace(facts, servers_unknown=True)

    def _publish(self, facts: Facts, images: list[GlanceImage]) -> tuple[Facts, Publisher | None]:
        """Publish the metadata naming `images`: the facts with whether it was, and the publisher."""
        if not self.config.publishes_metadata:
            return facts, None
        self.progress.phase("publishing metadata")
        if self._swift_warm_up is not None:  # its token validation is then the one the publish's requests use
            self._swift_warm_up.join()
        publisher = publish_images(self.config, self.cloud, images, self.observed, self.report)
        return replace(facts, metadata_published=publisher is not None), publisher

    def _delete_unpublished(self, facts: Facts) -> Facts:
        """Delete what the published metadata no longer names: the facts without what is gone, and with
        the images whose delete the image store refused because clones still use them."""
        deletions = make_plan(facts).delete_after_publish
        answers = {d.image.id: delete(self.glance, d.image, d.reason, self.report) for d in deletions}
        refused = frozenset(image_id for image_id, answer in answers.items() if answer is ImageInUseByStore)
        owned = tuple(image for image in facts.owned if answers.get(image.id) is not True)
        return replace(facts, owned=owned, store_uses=refused)

    # -- what the next run's quick check compares -------------------------------------------------
    def _clean(self, plan: Plan) -> bool:
        """Nothing failed so far and nothing is left for a later run: what the quick check needs."""
        return self.report.result.ok and plan.settled

    def _list_if_clean(self, pool: ThreadPoolExecutor, plan: Plan) -> Future | None:
        if not self._clean(plan):
            return None
        return pool.submit(owned_images, self.cloud, self.glance_endpoint, self.config.content_id)

    def _record(self, final_listing: Future, publisher: Publisher | None, image_count: int) -> None:
        self.record = record_of_clean_run(
            self.cloud, self.glance_endpoint, final_listing, self.observed, user_agent=self.config.user_agent,
            content_id=self.config.content_id, storage_url=getattr(publisher, "storage_url", None),
            metadata_url=publisher.metadata_url if publisher else "", image_count=image_count,
            result=self.report.result, said=self.report.settled_lines,
        )  # fmt: skip
