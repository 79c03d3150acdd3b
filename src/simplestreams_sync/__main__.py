"""Command line: `python3 -m simplestreams_sync --mirrors M --identity I [--dry-run | --publish-only]`
(see __init__)."""

from __future__ import annotations

import argparse
import sys

from . import EXIT_CONFIG, EXIT_CRASHED, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, early_login
from .directories import DEFAULT_STATE_DIR
from .output import print_error, print_line
from .sync_lock import SyncAlreadyRunning, SyncLock
from .timestamps import utc_now

# A scheduled run that finds nothing new ends at the quick check (quick_check.py). So that Keystone and
# Glance answer while it loads, a run takes the lock and sends its first requests (early_login.py) before
# loading anything else: the quick check's modules, then, when it falls through, the heavy ones (config:
# pydantic; engine: keystoneauth, glanceclient, simplestreams) are imported in the functions below.

DEFAULT_CONF_DIR = "/etc/glance-simplestreams-sync"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="simplestreams_sync", description=__doc__)
    parser.add_argument(
        "--mirrors",
        default=f"{DEFAULT_CONF_DIR}/mirrors.yaml",
        help="mirrors.yaml: what to mirror (default: %(default)s)",
    )
    parser.add_argument(
        "--identity",
        default=f"{DEFAULT_CONF_DIR}/identity.yaml",
        help="identity.yaml: keystone credentials (default: %(default)s)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read and verify the sources, compare with Glance, print what would be created",
    )
    parser.add_argument(
        "--assume-empty-glance",
        action="store_true",
        help="with --dry-run: do not ask Glance, plan as if it held none of our images",
    )
    parser.add_argument(
        "--full-check",
        action="store_true",
        help="always read, verify and compare everything, even when the quick check finds "
        "nothing changed since the last clean sync",
    )
    parser.add_argument(
        "--publish-only",
        action="store_true",
        help="sync nothing: make the metadata location serve a valid index (an empty image "
        "list until a sync publishes ours) and print its URL",
    )
    parser.add_argument(
        "--retry",
        action="store_true",
        help="sync only when the retry of a failed run is due (last-sync.json's next_try) or no sync has left "
        "a result yet; otherwise, or while another sync runs, exit 0 at once without output (cron runs "
        "this every minute)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    if args.retry and (args.dry_run or args.publish_only):
        parser.error("--retry goes with neither --dry-run nor --publish-only")
    if args.assume_empty_glance and not args.dry_run:
        parser.error("--assume-empty-glance only goes with --dry-run")
    if args.publish_only and (args.dry_run or args.full_check):
        parser.error("--publish-only goes with neither --dry-run nor --full-check")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _run(args)
    finally:
        early_login.forget()


def _run(args: argparse.Namespace) -> int:
    if args.dry_run:  # changes nothing: no lock, no result
        if not args.assume_empty_glance:
            early_login.start(args.identity, _mirrors_as_written(args.mirrors))
        _configure_logging(args)
        try:
            return _sync(args)
        except Exception as error:
            return _crashed(error, None, "", None)
    mirrors = _mirrors_as_written(args.mirrors)
    state_dir = _state_dir(mirrors)
    if state_dir is None:  # not a readable mapping: the full load names the problem, before any change
        if args.retry:  # the scheduled run names it; every minute would flood the log
            return EXIT_OK
        _configure_logging(args)
        return _publish_only(args) if args.publish_only else _sync(args)
    if args.retry and not _retry_due(state_dir):
        return EXIT_OK
    started = utc_now()
    try:
        with SyncLock(state_dir):  # the one lock: publish-only, the quick check and the full sync run under it
            try:
                return _locked(args, state_dir, mirrors)
            except Exception as error:
                return _crashed(error, state_dir if not args.publish_only else None, started, mirrors)
    except SyncAlreadyRunning as error:
        if args.retry:  # the sync that runs is the retry
            return EXIT_OK
        print_error(f"error: {error}")
        return EXIT_LOCKED


def _locked(args: argparse.Namespace, state_dir: str, mirrors: dict | None) -> int:
    """What main() does once it holds the lock."""
    if args.retry and not _retry_due(state_dir, say=True):  # a run may have ended since
        return EXIT_OK
    early_login.start(args.identity, None if args.publish_only else mirrors)
    _configure_logging(args)
    if args.publish_only:
        return _publish_only(args)
    if not args.full_check:
        code = _quick_noop(state_dir)
        if code is not None:
            return code
    early_login.warm_up_object_store(mirrors)
    return _sync(args, state_dir)


def _configure_logging(args: argparse.Namespace) -> None:
    import logging

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )  # simplestreams puts a NullHandler on the root logger at import


def _crashed(error: Exception, state_dir: str | None, started: str, mirrors: dict | None) -> int:
    """An unexpected exception: its traceback to stderr (the sync log) and, for a sync (`state_dir`),
    a failed result that says it crashed, with the retry scheduled."""
    from pathlib import Path

    from .outcomes import crash_text, crash_traceback, frequency_in, record_crash
    from .state import PROGRESS_FILE

    print_error(crash_traceback(error).rstrip())
    print_error(f"error: the sync crashed: {crash_text(error)}")
    if state_dir is not None:
        Path(state_dir, PROGRESS_FILE).unlink(missing_ok=True)
        record_crash(state_dir, started, error, frequency_in(mirrors))
    return EXIT_CRASHED


def _retry_due(state_dir: str, say: bool = False) -> bool:
    """Whether the retry of the last run is due now (retry.py); `say`: print which retry starts."""
    from datetime import datetime, timezone

    from . import retry
    from .state import read_result

    result = read_result(state_dir)
    due = retry.is_due(result.next_try if result else None, datetime.now(timezone.utc))
    if due and say:
        what = f"retry {result.failures_in_a_row} of the sync that failed {result.finished}" if result else "first sync"
        print_line(f"{utc_now()} {what} (--retry)")
    return due


def _mirrors_as_written(mirrors_path: str) -> dict | None:
    """mirrors.yaml's mapping as written (the full load validates it), before the heavy imports."""
    import yaml

    from .yaml_file import read_yaml

    try:
        data = read_yaml(mirrors_path)
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _state_dir(mirrors: dict | None) -> str | None:
    """state_dir in mirrors.yaml as written, or None when it is not a readable mapping."""
    if mirrors is None:
        return None
    state_dir = mirrors.get("state_dir", DEFAULT_STATE_DIR)
    return state_dir if isinstance(state_dir, str) and state_dir else None


def _quick_noop(state_dir: str) -> int | None:
    """EXIT_OK when nothing changed since the last clean sync (quick_check.py); None: do the full sync."""
    import time

    from . import quick_check
    from .metrics import write_metrics
    from .run_once import summary
    from .state import SyncResult, write_result

    started, clock = utc_now(), time.monotonic()
    record = quick_check.still_current(state_dir)
    if record is None:
        return None
    result = SyncResult(
        started=started,
        finished=utc_now(),
        published=bool(record.swift_objects or record.local_files),
        metadata_url=record.metadata_url,
        product_streams_urls=record.product_streams_urls,
        kept=record.kept,
        needs_decision=record.needs_decision,
        images_active=record.image_count,
        quick_check=True,
        duration_seconds=round(time.monotonic() - clock, 3),
    )
    write_result(state_dir, result)
    write_metrics(state_dir, result)
    what = f"the source, our {record.image_count} images in Glance"
    what += f" and the metadata at {record.metadata_url}" if record.swift_objects or record.local_files else ""
    for line in record.said:
        print_line(line)
    print_line(f"unchanged since the sync of {record.recorded}: {what} (quick check; --full-check redoes it all)")
    print_line(summary(result))
    return EXIT_OK


def _sync(args: argparse.Namespace, state_dir: str | None = None) -> int:
    """The full sync (main() holds the lock unless it is a dry run; then `state_dir` is mirrors.yaml's)."""
    from .config import ConfigError, load_identity, load_sync_config
    from .run_once import new_run, run_and_record, summary

    try:
        config = load_sync_config(args.mirrors)
        identity = None if args.assume_empty_glance else load_identity(args.identity)
    except ConfigError as error:
        if state_dir is None or _config_error_is_new(args, state_dir, str(error)):
            print_error(f"error: {error}")
        return EXIT_CONFIG
    if state_dir is not None:
        from .outcomes import forget_config_error

        forget_config_error(state_dir)
    if args.dry_run:
        result = new_run(config, identity, args).run()
    else:
        result = run_and_record(config, identity, args)
    print_line(summary(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def _config_error_is_new(args: argparse.Namespace, state_dir: str, error: str) -> bool:
    """The retry line says a config error once per change of the config files; other runs always."""
    from .outcomes import config_error_is_new

    return not args.retry or config_error_is_new(state_dir, [args.mirrors, args.identity], error)


def _publish_only(args: argparse.Namespace) -> int:
    """Publish an empty image list for our content id unless the index already lists it, and print
    where: the URL the sync writes through, then the URL of each interface the product-streams endpoint
    should point at (the same a sync reports), see `publish_only_lines`."""
    from .config import ConfigError, load_identity, load_sync_config
    from .openstack import Cloud, CloudError
    from .publishing import publish_empty_unless_listed

    try:
        config = load_sync_config(args.mirrors)
        identity = load_identity(args.identity)
    except ConfigError as error:
        print_error(f"error: {error}")
        return EXIT_CONFIG
    if not config.publishes_metadata:
        print_error(f"error: use_swift is false in {args.mirrors}: no metadata is published")
        return EXIT_CONFIG
    try:
        lines = publish_empty_unless_listed(config, Cloud(identity, config.object_store_proxies()))
    except CloudError as error:
        print_error(f"error: metadata not published: {error}")
        return EXIT_FAILED
    for line in lines:
        print_line(line)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
