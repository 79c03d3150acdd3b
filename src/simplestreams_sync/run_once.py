"""One full run under the sync lock: the engine's run with its watchdog and its stop on SIGTERM, then
its result, metrics and quick-check record written."""

from __future__ import annotations

import signal

from . import EXIT_FAILED
from .metrics import write_metrics
from .output import print_error, print_line
from .state import ProgressFile, SyncResult, read_stop_request, write_result


def _stop_on_sigterm(state_dir: str):
    """SIGTERM asks the run to stop at its next safe point; why: the stop request's text, if any."""
    requested: list[str] = []

    def on_sigterm(signum, frame) -> None:
        requested.append(read_stop_request(state_dir) or "asked to stop (SIGTERM)")

    signal.signal(signal.SIGTERM, on_sigterm)
    return lambda: requested[0] if requested else None


def new_run(config, identity, args, progress=None, stop_reason=None):
    from .engine import SyncRun

    return SyncRun(
        config,
        identity,
        dry_run=args.dry_run,
        assume_empty_glance=args.assume_empty_glance,
        out=print_line,
        err=print_error,
        progress=progress,
        **({"stop_reason": stop_reason} if stop_reason else {}),
    )


def run_and_record(config, identity, args) -> SyncResult:
    """Run (the lock is held); write the result, the metrics and, after a clean run, the record of
    what it observed for the next run's quick check."""
    from . import quick_check
    from .upload import RunProgress

    input_paths = [args.mirrors, args.identity, *(config.keyring_for(mirror) for mirror in config.mirror_list)]
    if identity.ca_file:
        input_paths.append(identity.ca_file)
    inputs = quick_check.input_digests(input_paths)  # the bytes this run starts from
    quick_check.forget(config.state_dir)
    progress_file = ProgressFile(config.state_dir)
    progress = RunProgress(progress_file)
    try:
        with _watchdog(progress_file, config):
            sync = new_run(config, identity, args, progress, _stop_on_sigterm(config.state_dir))
            result = sync.run()
        write_result(config.state_dir, result, config.frequency)
        write_metrics(config.state_dir, result)
    finally:
        progress.close()
    if sync.record is not None:
        sync.record.inputs = inputs
        sync.record.identity_file = args.identity
        quick_check.save(config.state_dir, sync.record)
    return result


def _watchdog(progress_file: ProgressFile, config):
    """The watchdog on the run (watchdog.py): on a stall it records the failure and ends the process."""
    from .outcomes import record_failure
    from .watchdog import Watchdog, no_progress_limit

    started = progress_file.data["started"]

    def on_stall(message: str) -> None:
        progress_file.close()
        record_failure(config.state_dir, started, message, config.frequency)
        print_error(f"error: {message}")

    return Watchdog(progress_file, on_stall, EXIT_FAILED, no_progress_limit(config))


def summary(result) -> str:
    if result.dry_run:
        return f"dry run: {len(result.would_create)} would be created, {len(result.errors)} errors"
    return (
        f"sync finished: {len(result.created)} created, {len(result.failed)} failed, "
        f"{len(result.deleted)} deleted, {len(result.errors)} errors"
    )
