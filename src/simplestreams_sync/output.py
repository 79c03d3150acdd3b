"""The command's output: whole lines on stdout and stderr (uploads report from several threads)."""

from __future__ import annotations

import sys
import threading

_OUTPUT_LOCK = threading.Lock()  # uploads report from several threads: whole lines, never interleaved


def print_line(line: str) -> None:
    _write_line(sys.stdout, line)


def print_error(line: str) -> None:
    _write_line(sys.stderr, line)


def _write_line(stream, line: str) -> None:
    with _OUTPUT_LOCK:
        stream.write(line + "\n")
        stream.flush()
