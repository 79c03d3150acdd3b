"""What a run says (stdout, stderr) and records in its result, from any of its threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .plan import GlanceImage, Plan
from .source import SourceImage
from .state import SyncResult, utc_now

LOG = logging.getLogger(__name__)

Output = Callable[[str], None]


class RunReport:
    """The run's lines and its SyncResult. `settled_lines`: what it said about images it leaves as they
    are for as long as Glance stays as it is, which a quick check repeats."""

    def __init__(self, dry_run: bool, out: Output, err: Output):
        self.out = out
        self.err = err
        self.result = SyncResult(started=utc_now(), dry_run=dry_run)
        self.settled_lines: list[str] = []
        self._lock = threading.Lock()

    def error(self, message: str) -> None:
        with self._lock:
            self.result.errors.append(message)
        self.err(f"error: {message}")

    def stopped(self, reason: str | None) -> bool:
        """Whether the run was asked to stop (`reason`); if so, it says why and records it."""
        if reason is None:
            return False
        self.result.stopped = reason
        self.err(f"stopped at a safe point, publishing and deleting nothing more: {reason}")
        return True

    def failed(self, name: str, message: str) -> None:
        with self._lock:
            self.result.failed.append({"name": name, "error": message})
        self.err(f"failed {name}: {message}")

    def created(self, stored: dict, name: str) -> None:
        with self._lock:
            self.result.created.append({"id": stored["id"], "name": name})
            self.result.bytes_transferred += stored.get("size") or 0
        self.out(f"created {stored['id']}: {name}")

    def deleted(self, image: GlanceImage, reason: str) -> None:
        self.out(f"deleted {image.id}: {image.name} ({reason})")
        self.result.deleted.append({"id": image.id, "name": image.name, "reason": reason})

    def kept(self, plan: Plan) -> None:
        """Say what the run keeps and leaves to an operator, and record it in the result, with how many
        images it publishes (active)."""
        self.result.images_active = len(plan.publish)
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

    def plan(self, plan: Plan, names: dict[tuple, str]) -> None:
        """A dry run: what a real run would do, as far as it can be known without changing anything."""
        for deletion in plan.delete_now:
            self.out(f"would delete {deletion.image.id}: {deletion.image.name} ({deletion.reason})")
        for image in plan.adopt:
            self.out(f"would adopt {image.id}: {image.name} (once its bytes are found to match the source)")
        self.would_create(plan.upload, names)
        for deletion in plan.delete_after_publish:
            self.out(f"would delete {deletion.image.id}: {deletion.image.name} ({deletion.reason})")
        for image in plan.hide:
            self.out(f"would hide {image.id}: {image.name}")
        for image in plan.unhide:
            self.out(f"would show {image.id}: {image.name} again")
        self.kept(plan)

    def would_create(self, images: list[SourceImage], names: dict[tuple, str]) -> None:
        for image in images:
            name = names[image.key]
            self.out(f"would create {image.product_name} {image.version_name} {image.item_name}: {name}")
            self.result.would_create.append(
                {"product": image.product_name, "version": image.version_name, "item": image.item_name, "name": name}
            )

    def _say(self, line: str, settled: bool) -> None:
        self.out(line)
        if settled:
            self.settled_lines.append(line)
