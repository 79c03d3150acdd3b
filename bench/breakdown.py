"""Where a run's time goes, from its bench.trace report: interpreter start, imports, the requests to each
service (Keystone, Glance, Swift, the source) and what follows the last answer (writing state, exit).

Requests overlap, so a service's figure is the wall time during which at least one request to it was
open; the steps therefore do not add up to the total when the run does things at once.
"""

from __future__ import annotations

import re
import urllib.parse

STEPS = ("interpreter start", "imports", "keystone", "glance", "swift", "source", "after the last answer", "total")
IMAGE_PATH = re.compile(r"/v2/images/([0-9a-f-]{36})")


def service_names(urls: dict[str, str]) -> dict[str, str]:
    """host:port -> service name, from {name: URL}."""
    names = {}
    for name, url in urls.items():
        parts = urllib.parse.urlsplit(url)
        names[f"{parts.hostname}:{parts.port}"] = name
    return names


def _busy(intervals: list[tuple[float, float]]) -> float:
    """Wall time covered by at least one of the intervals."""
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            covered += end - max(start, reach)
            reach = end
    return covered


def steps(report: dict, names: dict[str, str]) -> dict:
    """{step: seconds, "<service> requests": count, "requests": [...]} of one traced run."""
    requests = [{**entry, "service": names.get(entry["host"], entry["host"])} for entry in report["requests"]]
    result: dict = {
        "interpreter start": report["started"] - report["spawned"],
        "imports": report["imports"],
        "total": report["ended"] - report["spawned"],
        "after the last answer": report["ended"] - max((r["end"] for r in requests), default=report["started"]),
    }
    for service in ("keystone", "glance", "swift", "source"):
        mine = [(r["start"], r["end"]) for r in requests if r["service"] == service]
        result[service] = _busy(mine)
        result[f"{service} requests"] = len(mine)
    result["requests"] = [
        {
            "service": r["service"],
            "method": r["method"],
            "path": r["path"],
            "start": round(r["start"] - report["spawned"], 3),
            "seconds": round(r["end"] - r["start"], 3),
            "thread": r["thread"],
        }
        for r in requests
    ]
    return result


def one_image(found: dict) -> list[dict]:
    """The Glance requests about the first image a run created: its POST /v2/images (the last one its
    thread made before the first request naming the image) and every request naming it."""
    requests = found["requests"]
    named = [(index, IMAGE_PATH.search(r["path"])) for index, r in enumerate(requests)]
    first = next(((index, match.group(1)) for index, match in named if match), None)
    if first is None:
        return []
    index, image_id = first
    thread = requests[index]["thread"]
    create = [r for r in requests[:index] if r["thread"] == thread and r["method"] == "POST"][-1:]
    return create + [r for r in requests if image_id in r["path"]]


def print_side_by_side(title: str, sides: dict[str, dict]) -> None:
    print(f"\nwhere the time goes: {title} (seconds from process start; requests in brackets)")
    print(f"{'step':<24}" + "".join(f"{side:>14}" for side in sides))
    for step in STEPS:
        cells = []
        for found in sides.values():
            count = found.get(f"{step} requests")
            cells.append(f"{found[step]:8.3f}" + (f" ({count:>2})" if count is not None else "     "))
        print(f"{step:<24}" + "".join(f"{cell:>14}" for cell in cells))
    for side, found in sides.items():
        print(f"  {side}: requests in order (start, seconds)")
        for r in found["requests"]:
            print(f"    +{r['start']:.3f} {r['seconds']:.3f}  {r['service']:<8} {r['method']:<6} {_short(r['path'])}")


def print_one_image(title: str, sides: dict[str, dict], images: int) -> None:
    print(f"\nwhere the time goes: {title}: one image's Glance requests, and each run's requests per image")
    for side, found in sides.items():
        per_run = ", ".join(
            f"{service} {found[f'{service} requests'] / images:.2f}" for service in ("keystone", "glance", "swift")
        )
        print(f"  {side}: {per_run} (requests per image, run total / {images})")
        for r in one_image(found):
            print(f"    {r['seconds']:.3f} s  {r['method']:<6} {_short(r['path'])}")


def _short(path: str) -> str:
    return IMAGE_PATH.sub("/v2/images/<id>", path)[:90]
