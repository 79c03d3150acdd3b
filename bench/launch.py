"""Run a command and report its own wall time, CPU time, peak RSS and disk writes to a JSON file.

    python -m bench.launch REPORT.json -- argv...

Why a launcher: on Linux a child's peak RSS (ru_maxrss) starts from the RSS of the process that forked
it, so a command forked straight from the benchmark (70+ MiB of fixtures) would report at least that.
Forked from this small process instead, the figure is the command's own (plus ~10 MiB at most).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    report, separator, *argv = sys.argv[1:]
    assert separator == "--" and argv, "usage: python -m bench.launch REPORT.json -- argv..."
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    with open(report, "w") as out:
        json.dump(
            {
                "wall": wall,
                "maxrss_kib": usage.ru_maxrss,
                "oublock": usage.ru_oublock,
                "cpu": usage.ru_utime + usage.ru_stime,
            },
            out,
        )
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
