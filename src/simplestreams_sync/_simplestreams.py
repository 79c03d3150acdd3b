"""The simplestreams library, imported once without its slow import-time probe.

Every module of this package takes simplestreams from here. The package itself imports nothing heavy,
so a sync that finds nothing changed (quick_check.py) starts fast."""

import sys


def _import_simplestreams_without_version_probe() -> None:
    """simplestreams.contentsource probes requests' version through distutils and pkg_resources when
    first imported, a noticeable part of a no-op sync. We never use its URL readers (source.py fetches
    with its own session), so the probe is skipped by making distutils.version unavailable during that
    one import; simplestreams then quietly selects its urllib reader, which we do not use either."""
    if "simplestreams.contentsource" in sys.modules:
        return
    saved = sys.modules.get("distutils.version")
    sys.modules["distutils.version"] = None  # type: ignore[assignment]  # None: "cannot be imported"
    try:
        import simplestreams.contentsource  # noqa: F401
    finally:
        if saved is None:
            del sys.modules["distutils.version"]
        else:
            sys.modules["distutils.version"] = saved


_import_simplestreams_without_version_probe()

from simplestreams import contentsource, filters, mirrors, util  # noqa: E402

__all__ = ["contentsource", "filters", "mirrors", "util"]
