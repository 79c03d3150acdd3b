"""Command line: `python3 -m simplestreams_sync --mirrors M --identity I [--dry-run]` (see __init__)."""

from __future__ import annotations

import argparse
import logging
import sys

from . import EXIT_CONFIG, EXIT_FAILED, EXIT_LOCKED, EXIT_OK
from .config import ConfigError, load_identity, load_sync_config
from .engine import Progress, SyncRun
from .metrics import write_metrics
from .state import ProgressFile, SyncAlreadyRunning, SyncLock, write_result

DEFAULT_CONF_DIR = "/etc/glance-simplestreams-sync"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="simplestreams_sync", description=__doc__)
    parser.add_argument("--mirrors", default=f"{DEFAULT_CONF_DIR}/mirrors.yaml",
                        help="mirrors.yaml: what to mirror (default: %(default)s)")
    parser.add_argument("--identity", default=f"{DEFAULT_CONF_DIR}/identity.yaml",
                        help="identity.yaml: keystone credentials (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and verify the sources, compare with Glance, print what would be created")
    parser.add_argument("--assume-empty-glance", action="store_true",
                        help="with --dry-run: do not ask Glance, plan as if it held none of our images")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    if args.assume_empty_glance and not args.dry_run:
        parser.error("--assume-empty-glance only goes with --dry-run")
    return args


def _print(line: str) -> None:
    print(line, flush=True)


def _print_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)  # simplestreams puts a NullHandler on the root logger at import
    try:
        config = load_sync_config(args.mirrors)
        identity = None if args.assume_empty_glance else load_identity(args.identity)
    except ConfigError as error:
        _print_err(f"error: {error}")
        return EXIT_CONFIG
    if args.dry_run:
        result = SyncRun(config, identity, dry_run=True, assume_empty_glance=args.assume_empty_glance,
                         out=_print, err=_print_err).run()
    else:
        try:
            with SyncLock(config.state_dir):
                progress = Progress(ProgressFile(config.state_dir))
                try:
                    result = SyncRun(config, identity, out=_print, err=_print_err, progress=progress).run()
                    write_result(config.state_dir, result)
                    write_metrics(config.state_dir, result)
                finally:
                    progress.close()
        except SyncAlreadyRunning as error:
            _print_err(f"error: {error}")
            return EXIT_LOCKED
    _print(_summary(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def _summary(result) -> str:
    if result.dry_run:
        return f"dry run: {len(result.would_create)} would be created, {len(result.errors)} errors"
    return (f"sync finished: {len(result.created)} created, {len(result.failed)} failed, "
            f"{len(result.deleted)} deleted, {len(result.errors)} errors")


if __name__ == "__main__":
    sys.exit(main())
