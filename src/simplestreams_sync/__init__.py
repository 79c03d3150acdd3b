"""The sync engine: mirror simplestreams image sources into Glance, publish image-ids metadata to the
object store (Swift or Ceph RGW) or to the directory the unit's own web server serves.

Imports nothing from ops; cron and the charm's action run it the same way:

    python3 -m simplestreams_sync --mirrors mirrors.yaml --identity identity.yaml [--dry-run]

Exit codes: 0 all mirrors synced; 1 some mirror or image failed (the others were still synced);
2 a config file is invalid; 3 another sync holds the lock.
Stdout: one line per image, `created <glance-id>: <name>` (dry run: `would create <product> <version>
<item>: <name>`), then a summary line. Progress and the run's result go to the state dir (state.py).
With --publish-only it syncs nothing: it publishes an empty image list unless the index already lists
ours, and prints the metadata URL (exit 0), or exits 1 saying why not.
With --retry (cron's every-minute line) it syncs only when the retry of a failed run is due (retry.py),
and otherwise exits 0 at once without output, as it does when another sync holds the lock.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3
