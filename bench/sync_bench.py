"""How fast the sync gets images into Glance, next to Glance's own floor and to sstream-mirror-glance.

    bench/run [--rounds 3] [--image-mib 512] [--images 4] [--only a,b,many,c,rss] [--glance-stores file,rbd]
              [--workdir DIR] [--keep]

Starts the test fixture's local cloud (Keystone, Glance, Swift on 127.0.0.1) and a signed simplestreams
source of incompressible qcow2 images served over HTTP by a separate process, then runs, round after
round in the same session, each side of each workload. Workloads a and many run once per Glance store
(--glance-stores): on its file store, then on Ceph RBD (a second local cloud, LocalCloud(glance_store="rbd"),
started once the first is stopped); their results on RBD are named a-rbd and a-many-rbd.

  (a) N images x M MiB, fresh Glance content (a unique content_id) for every side and round:
      floor - bench/floor.py, a bare client: create image + stream the source's bytes into Glance,
              with the same concurrency as ours (max_parallel); what Glance itself can ingest here;
      ours  - python -m simplestreams_sync (verifies sha256 and md5, then Glance's checksum; publishes to Swift);
      peer  - sstream-mirror-glance (python-simplestreams), same source and filters, --max 1.
      floor+s, floor+v - the floor sending each image's size (X-Openstack-Image-Size, as ours does), and
              that plus the two digests the sync computes on the stream: the floor ours is held to;
  (b) the same again with nothing new: ours and peer re-run against what (a) just created (file store).
  (many) --many-images x --many-image-kib (64 x 1 MiB): the cost per image beyond the bytes (requests to
      Glance, Keystone, properties): ms per image of ours over the floor, and ours / peer.
  (c) plan only on the real signed 2016 Canonical catalog (7,008 items), file:// mirror,
      `--dry-run --assume-empty-glance`: signature check + filters + selection.
  rss one 2 GiB image through ours: peak RSS and the bytes it wrote to local disk.

Each side is timed from process start to exit. Peak RSS and local disk writes come from the kernel's
accounting of the exited process (wait4: ru_maxrss, ru_oublock), taken by bench/launch.py, a small
process that forks the side so its peak RSS is not inflated by this one's. Bytes moved are the image bytes the
source server sent during that run (its request log). Every round's images are deleted after the
round. Results go to stdout and to <workdir>/results.json. Everything started is stopped by PID at the
end, also on Ctrl-C or error; the workdir (images) is deleted unless --keep.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import glanceclient
import yaml

from bench import breakdown
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.engine_cli import engine_argv, engine_env, openstack_env
from tests.localcloud.source import SourceBuilder, make_test_key
from tests.localcloud.source_server import SourceServer

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MIB = 1 << 20
REAL_STREAMS = ROOT / "tests" / "data" / "realstreams"
FILTERS = ["arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"]
PLAN_FILTERS = ["release~(trusty|xenial)", "arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"]
RELEASES = [("xenial", "16.04"), ("bionic", "18.04"), ("focal", "20.04"), ("jammy", "22.04"), ("noble", "24.04")]
CLOUD_NAME = "bench"
TARGETS = {
    "a": "ours <= 1.15 x floor and <= 0.5 x peer",
    "a-rbd": "ours <= 1.10 x floor+v (the verifying floor, sending sizes) and <= 0.5 x peer",
    "a-many": "ours <= 30 ms per image over the floor",
    "a-many-rbd": "ours <= 30 ms per image over the floor",
    "b": "zero image bytes moved; ours <= 1.25 x the no-op floor and <= 0.35 x peer",
    "b-full": "ours <= 0.9 x peer (b's)",
    "b-cron": "zero image bytes moved; ours <= 1.25 x the no-op floor (b's) and <= 0.35 x peer",
    "c": "ours <= 1 s",
    "rss": "peak RSS <= 150 MiB with a 2 GiB image; no image bytes written to local disk",
}
RUN_TIMEOUT = 1800
# b-cron: ours runs with its clocks 61 minutes ahead (libfaketime), as a run cron starts an hour or more
# after the last one sees it: every token the last run held has expired. (Leaving the monotonic clock alone,
# DONT_FAKE_MONOTONIC, breaks Python's timed waits: time.sleep fails, lock waits spin.)
AN_HOUR_LATER = ["faketime", "-f", "+61m"]
QUICK_CHECK_LINE = "(quick check; --full-check redoes it all)"
TRACE_B = "b (the no-op: ours ends at the quick check)"
TRACE_B_FULL = "b full (ours with --full-check against the peer's no-op)"
GLANCE_STORES = ("file", "rbd")
WORKLOAD_NAMES = {"a": "a fresh", "a-rbd": "a rbd", "a-many": "a many", "a-many-rbd": "many rbd", "b": "b no-op",
                  "b-full": "b full", "b-cron": "b cron", "c": "c plan", "rss": "rss 2GiB"}  # fmt: skip
FLOOR_SIDES = ("floor", "floor+s", "floor+v")
# How the summary's figures are printed beside each workload.
RATIO_LABELS = (
    ("ours_over_floor", "ours/floor {:.3f}"),
    ("ours_over_verifying_floor", "ours/floor+v {:.3f}"),
    ("ours_over_peer", "ours/peer {:.3f}"),
    ("floor_with_size_over_floor", "floor+s/floor {:.3f}"),
    ("ms_per_image_over_floor", "ours {:.0f} ms/image over floor"),
    ("ms_per_image_over_verifying_floor", "{:.0f} over floor+v"),
)


@dataclass
class Run:
    side: str
    workload: str
    round: int
    wall_s: float
    exit_code: int
    peak_rss_mib: float
    disk_write_bytes: int
    image_bytes_moved: int = 0
    images_created: int = 0
    cpu_s: float = 0.0  # CPU (user + system) of the side's own process
    glance_cpu_s: float = 0.0  # CPU Glance's processes spent meanwhile
    others_cpu_s: float = 0.0  # CPU of the source server, Keystone, Swift and PostgreSQL meanwhile
    machine_busy: float = 0.0  # share of all CPUs' time the machine was busy meanwhile (0..1)
    problem: str = ""  # set when the run did not do its whole job (its time then does not count as valid)
    output: str = ""  # the last line the side printed


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    cloud: LocalCloud | None = None
    keyring: Path | None = None
    runs: list[Run] = field(default_factory=list)
    child: subprocess.Popen | None = None  # the process being timed, killed on interrupt
    traces: dict[str, dict[str, dict]] = field(default_factory=dict)  # title -> side -> breakdown.steps()
    tracing: Path | None = None  # set: the next side runs once under bench.trace, untimed, reported here

    # --- running one timed process ------------------------------------------------------------
    def timed(self, argv: list[str], env: dict, log_name: str) -> tuple[float, int, dict, str]:
        """Run argv to completion through bench.launch; (wall seconds, exit code, its own usage, stdout)."""
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        out_path, err_path = logs / f"{log_name}.out", logs / f"{log_name}.err"
        report = logs / f"{log_name}.usage.json"
        launcher = [sys.executable, "-m", "bench.launch", str(report), "--"]
        if self.tracing is not None:
            launcher, argv = [], _traced(argv, self.tracing)
            env = {**env, "BENCH_SPAWNED": repr(time.time()), "PYTHONPATH": f"{env.get('PYTHONPATH', '')}:{ROOT}"}
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.child = subprocess.Popen(
                [*launcher, *argv],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                code = self.child.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"{argv[:3]} still running after {RUN_TIMEOUT}s") from None
        self.child = None
        if self.tracing is not None:
            return 0.0, code, {}, out_path.read_text()
        usage = json.loads(report.read_text())
        if code != 0:
            print(f"  ! {log_name} exited {code}: {_tail(err_path)}", flush=True)
        return usage["wall"], code, usage, out_path.read_text()

    def kill_child(self) -> None:
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGKILL)  # its own session: the group it leads
            self.child.wait()
        self.child = None

    # --- the three sides ----------------------------------------------------------------------
    def ours(
        self,
        source_url: str,
        content_id: str,
        workload: str,
        rnd: int,
        *,
        parallel: int,
        server: SourceServer | None,
        extra: tuple = (),
        mirror_url: str | None = None,
        keyring: Path | None = None,
        filters: list[str] = FILTERS,
        an_hour_later: bool = False,
    ) -> Run:
        etc = self.workdir / "ours" / content_id
        etc.mkdir(parents=True, exist_ok=True)
        mirrors = {
            "mirror_list": [
                {"url": mirror_url or source_url, "path": "streams/v1/index.sjson", "max": 1, "item_filters": filters}
            ],
            "keyring": str(keyring or self.keyring),
            "state_dir": str(etc / "state"),
            "content_id_template": content_id,
            "cloud_name": CLOUD_NAME,
            "name_prefix": "bench-ours/",
            "max_parallel": parallel,
        }
        if self.cloud is not None:
            mirrors["region"] = self.cloud.region
            (etc / "identity.yaml").write_text(yaml.safe_dump(self.cloud.sync_identity))
            (etc / "identity.yaml").chmod(0o600)
        (etc / "mirrors.yaml").write_text(yaml.safe_dump(mirrors))
        env = engine_env()
        argv = engine_argv(etc / "mirrors.yaml", etc / "identity.yaml", *extra)
        if an_hour_later:
            argv = [*AN_HOUR_LATER, *argv]
        return self._side("ours", workload, rnd, argv, env, server)

    def floor(
        self,
        items: list[dict],
        content_id: str,
        workload: str,
        rnd: int,
        *,
        parallel: int,
        server: SourceServer,
        side: str = "floor",
    ) -> Run:
        spec = self.workdir / "floor" / f"{content_id}.json"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(
            json.dumps(
                {
                    "identity": self.cloud.sync_identity,
                    "content_id": content_id,
                    "parallel": parallel,
                    "items": items,
                    "verify": side == "floor+v",
                    "send_size": side in ("floor+s", "floor+v"),
                }
            )
        )
        argv = [sys.executable, "-m", "bench.floor", str(spec)]
        return self._side(side, workload, rnd, argv, {**os.environ, "PYTHONPATH": str(ROOT)}, server)

    def noop_floor(self, content_id: str, workload: str, rnd: int, *, server: SourceServer) -> Run:
        """bench/noop_floor.py: log in, list our images, read the published index anonymously."""
        spec = self.workdir / "floor" / f"{content_id}.noop.json"
        spec.parent.mkdir(parents=True, exist_ok=True)
        index_url = f"{self.cloud.swift_url}/simplestreams/data/streams/v1/index.json"
        spec.write_text(json.dumps({"identity": self.cloud.sync_identity, "content_id": content_id,
                                    "index_url": index_url}))  # fmt: skip
        argv = [sys.executable, "-m", "bench.noop_floor", str(spec)]
        return self._side("floor", workload, rnd, argv, {**os.environ, "PYTHONPATH": str(ROOT)}, server)

    def trace(self, title: str, side: str, run, server: SourceServer) -> None:
        """Run `run()` (one side) once more under bench.trace, untimed, and keep where its time went."""
        self.tracing = self.workdir / "logs" / f"trace-{len(self.traces)}-{side.replace('+', '-')}.json"
        try:
            run()
            report = json.loads(self.tracing.read_text())
        except (OSError, ValueError) as error:
            print(f"  ! no trace of {side} for {title}: {error}", flush=True)
            return
        finally:
            self.tracing = None
        urls = {"keystone": self.cloud.auth_url, "glance": self.cloud.glance_url, "swift": self.cloud.swift_url,
                "source": server.url}  # fmt: skip
        self.traces.setdefault(title, {})[side] = breakdown.steps(report, breakdown.service_names(urls))

    def peer(self, source_url: str, content_id: str, workload: str, rnd: int, *, server: SourceServer) -> Run:
        identity = self.cloud.sync_identity
        tmp = self.workdir / "peer-tmp"  # its whole-image temp files: on local disk, emptied after each run
        tmp.mkdir(exist_ok=True)
        env = openstack_env(identity, TMPDIR=str(tmp))
        argv = [
            str(BIN / "sstream-mirror-glance"),
            f"--keyring={self.keyring}",
            "--max=1",
            f"--content-id={content_id}",
            f"--cloud-name={CLOUD_NAME}",
            f"--region={identity['region']}",
            "--name-prefix=bench-peer/",
            "--path=streams/v1/index.sjson",
            source_url,
            *FILTERS,
        ]
        try:
            return self._side("peer", workload, rnd, argv, env, server)
        finally:
            for leftover in tmp.iterdir():
                leftover.unlink()

    def _side(self, side: str, workload: str, rnd: int, argv: list[str], env: dict, server: SourceServer | None) -> Run:
        if server is not None:
            server.clear_requests()
        groups = self.service_groups(server)
        cpu_before = {name: _group_cpu_seconds(pgid) for name, pgid in groups.items()}
        machine_before = _machine_ticks()
        if self.tracing is not None:
            self.timed(argv, env, f"{workload}-{side}-traced")
            return Run(side, workload, rnd, 0.0, 0, 0.0, 0)
        wall, code, usage, out = self.timed(argv, env, f"{workload}-{side}-r{rnd}")
        spent = {name: _group_cpu_seconds(pgid) - cpu_before[name] for name, pgid in groups.items()}
        busy, total = (after - before for after, before in zip(_machine_ticks(), machine_before, strict=False))
        moved = _image_bytes_sent(server) if server is not None else 0
        run = Run(
            side,
            workload,
            rnd,
            round(wall, 3),
            code,
            round(usage["maxrss_kib"] / 1024, 1),
            usage["oublock"] * 512,
            moved,
            out.count("\ncreated ") + out.startswith("created "),
            cpu_s=round(usage["cpu"], 2),
            glance_cpu_s=round(spent.pop("glance", 0.0), 2),
            others_cpu_s=round(sum(spent.values()), 2),
            machine_busy=round(busy / max(total, 1), 3),
            output=(out.strip().splitlines() or [""])[-1][:200],
        )
        self.runs.append(run)
        print(
            f"  {workload:>6} r{rnd} {side:<7} {wall:8.2f} s  exit {code}  created {run.images_created}  "
            f"moved {moved / MIB:8.1f} MiB  rss {run.peak_rss_mib:6.1f} MiB  "
            f"disk writes {run.disk_write_bytes / MIB:8.1f} MiB  cpu {run.cpu_s:.1f} s, "
            f"glance {run.glance_cpu_s:.1f} s, others {run.others_cpu_s:.1f} s, "
            f"machine busy {run.machine_busy:.0%}",
            flush=True,
        )
        return run

    def service_groups(self, server: SourceServer | None) -> dict[str, int]:
        """Process group of each service whose CPU is accounted (each service leads its own group)."""
        groups = self.cloud.process_groups() if self.cloud is not None else {}
        if server is not None and server.pid:
            groups["source server"] = server.pid
        return groups

    # --- glance housekeeping ------------------------------------------------------------------
    def delete_content(self, content_id: str) -> None:
        """Delete every image tagged with content_id (a round's images), then flush the page cache."""
        glance = glanceclient.Client("2", session=self.cloud.admin_session())
        for image in list(glance.images.list(filters={"content_id": content_id})):
            if image.get("content_id") == content_id:
                for attempt in range(5):
                    try:
                        glance.images.delete(image["id"])
                        break
                    except Exception:
                        time.sleep(0.5 * (attempt + 1))
        os.sync()  # the next timed run does not pay for this one's writeback

    def count_active(self, content_id: str, size: int | None = None) -> int:
        glance = glanceclient.Client("2", session=self.cloud.admin_session())
        return sum(
            1
            for image in glance.images.list(filters={"content_id": content_id})
            if image.get("content_id") == content_id
            and image.get("status") == "active"
            and (size is None or image.get("size") == size)
        )


def _traced(argv: list[str], report: Path) -> list[str]:
    """The command (`python -m module ...` or a Python script) run under bench.trace, reporting to `report`."""
    tracer = [sys.executable, "-m", "bench.trace", str(report)]
    return [*tracer, *argv[1:]] if argv[0] == sys.executable else [*tracer, *argv]


def _image_bytes_sent(server: SourceServer) -> int:
    time.sleep(0.05)  # a request is logged just after its response
    return sum(entry.get("bytes_sent", 0) for entry in server.requests() if not entry["path"].startswith("/streams/"))


def _group_cpu_seconds(pgid: int) -> float:
    """CPU (user + system) so far of every live process in a process group, from /proc."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat (idle and iowait are not busy)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def build_source(root: Path, key, count: int, size: int, seed0: int) -> list:
    builder = SourceBuilder(root, key)
    items = []
    for index in range(count):
        release, version = RELEASES[index % len(RELEASES)]
        arch = "amd64"
        version = version if index < len(RELEASES) else f"{version}.{index}"
        items.append(
            builder.add_image(
                release=release,
                version=version,
                arch=arch,
                serial="20250101",
                size=size,
                seed=seed0 + index,
                incompressible=True,
            )
        )
    builder.write()
    return items


# --- workloads ----------------------------------------------------------------------------------


def workload_fresh(bench: Bench, key, name: str, count: int, size: int, sides: list[str], with_b: bool) -> None:
    """`count` images of `size` bytes into fresh Glance content, each side in turn, round after round; with_b:
    ours and the peer then run again on what they made (b, b-full)."""
    args = bench.args
    t0 = time.monotonic()
    items = build_source(bench.workdir / f"source-{name}", key, count, size, seed0=100)
    print(
        f"source: {count} x {size / MIB:g} MiB incompressible qcow2 built in {time.monotonic() - t0:.1f} s",
        flush=True,
    )
    with SourceServer(bench.workdir / f"source-{name}", bench.workdir / f"server-{name}") as server:
        floor_items = [
            {"url": server.url + item.path, "name": f"bench-floor/{Path(item.path).name}", "size": item.size}
            for item in items
        ]
        for rnd in range(1, args.rounds + 1):
            order = sides[rnd - 1 :] + sides[: rnd - 1]  # rotate who goes first
            for side in order:
                content_id = f"bench.{name}.r{rnd}.{side.replace('+', '-')}"
                try:
                    if side in FLOOR_SIDES:
                        run = bench.floor(
                            floor_items, content_id, name, rnd, parallel=args.parallel, server=server, side=side
                        )
                    elif side == "ours":
                        run = bench.ours(server.url, content_id, name, rnd, parallel=args.parallel, server=server)
                    else:
                        run = bench.peer(server.url, content_id, name, rnd, server=server)
                    active = bench.count_active(content_id)
                    if active != len(items):
                        run.problem = f"{active} of {len(items)} images active"
                        print(f"  ! {side}: {run.problem}", flush=True)
                    if with_b and side == "ours":
                        quick = partial(bench.ours, server.url, content_id, "b", rnd, parallel=args.parallel,
                                        server=server)  # fmt: skip
                        floor = partial(bench.noop_floor, content_id, "b", rnd, server=server)
                        for run_b in (floor, quick) if rnd % 2 else (quick, floor):
                            run_b()
                        full = partial(bench.ours, server.url, content_id, "b-full", rnd, parallel=args.parallel,
                                       server=server, extra=("--full-check",))  # fmt: skip
                        full()
                        cron = bench.ours(server.url, content_id, "b-cron", rnd, parallel=args.parallel,
                                          server=server, an_hour_later=True)  # fmt: skip
                        if QUICK_CHECK_LINE not in (bench.workdir / "logs" / f"b-cron-ours-r{rnd}.out").read_text():
                            cron.problem = "did not end at the quick check"
                            print(f"  ! ours: {cron.problem}", flush=True)
                        if rnd == 1:
                            bench.trace(TRACE_B, "ours", quick, server)
                            bench.trace(TRACE_B, "floor", floor, server)
                            bench.trace(TRACE_B_FULL, "ours full", full, server)
                    elif with_b and side == "peer":
                        bench.peer(server.url, content_id, "b", rnd, server=server)
                        # The peer keeps no token between runs: an hour later its no-op is the same run
                        # (and a clock ahead of Keystone's would only make it re-authenticate).
                        bench.peer(server.url, content_id, "b-cron", rnd, server=server)
                        if rnd == 1:
                            peer_b = partial(bench.peer, server.url, content_id, "b", rnd, server=server)
                            bench.trace(TRACE_B, "peer", peer_b, server)
                            if "peer" in bench.traces.get(TRACE_B, {}):  # b full is compared with b's peer
                                bench.traces.setdefault(TRACE_B_FULL, {})["peer"] = bench.traces[TRACE_B]["peer"]
                    if name.startswith("a-many") and rnd == 1 and side in ("ours", "floor"):
                        trace_one_image(bench, name, side, floor_items, content_id, server)
                finally:
                    bench.delete_content(content_id)
    shutil.rmtree(bench.workdir / f"source-{name}", ignore_errors=True)


def trace_one_image(bench: Bench, name: str, side: str, floor_items: list[dict], content_id: str, server) -> None:
    """Workload many once more for `side`, traced: one image's Glance requests (bench/breakdown.py)."""
    traced_id = f"{content_id}.traced"
    args = bench.args
    if side == "ours":
        run = partial(bench.ours, server.url, traced_id, name, 1, parallel=args.parallel, server=server)
    else:
        run = partial(bench.floor, floor_items, traced_id, name, 1, parallel=args.parallel, server=server)
    try:
        bench.trace(f"{WORKLOAD_NAMES[name]} ({args.many_images} images)", side, run, server)
    finally:
        bench.delete_content(traced_id)


def workloads_on(bench: Bench, key, store: str) -> None:
    """Workloads a (and b on the file store) and many, on a local cloud whose Glance uses `store`."""
    args, only = bench.args, bench.args.only_set
    suffix = "" if store == "file" else f"-{store}"
    if only & {"a", "b"}:
        sides = (
            ["floor", "floor+s", "floor+v", "ours", "peer"] if store == "rbd" else ["floor", "floor+v", "ours", "peer"]
        )
        with_b = "b" in only and store == "file"
        workload_fresh(bench, key, f"a{suffix}", args.images, args.image_mib * MIB, sides, with_b)
    if "many" in only:
        sides = ["floor", "floor+v", "ours", "peer"]
        workload_fresh(bench, key, f"a-many{suffix}", args.many_images, args.many_image_kib * 1024, sides, False)


def workload_c(bench: Bench) -> None:
    url = (REAL_STREAMS / "releases-2016").as_uri() + "/"
    keyring = REAL_STREAMS / "keyring" / "ubuntu-cloudimage-keyring.gpg"
    for rnd in range(1, bench.args.rounds + 1):
        bench.ours(
            url,
            f"bench.c.r{rnd}",
            "c",
            rnd,
            parallel=bench.args.parallel,
            server=None,
            extra=("--dry-run", "--assume-empty-glance"),
            keyring=keyring,
            filters=PLAN_FILTERS,
        )


def workload_rss(bench: Bench, key) -> None:
    size = bench.args.rss_image_mib * MIB
    t0 = time.monotonic()
    items = build_source(bench.workdir / "source-rss", key, 1, size, seed0=900)
    print(f"source: 1 x {bench.args.rss_image_mib} MiB built in {time.monotonic() - t0:.1f} s", flush=True)
    with SourceServer(bench.workdir / "source-rss", bench.workdir / "server-rss") as server:
        content_id = "bench.rss.ours"
        try:
            run = bench.ours(server.url, content_id, "rss", 1, parallel=bench.args.parallel, server=server)
            if bench.count_active(content_id, items[0].size) != 1:
                run.problem = "image not active in Glance"
        finally:
            bench.delete_content(content_id)
    shutil.rmtree(bench.workdir / "source-rss", ignore_errors=True)


# --- report -------------------------------------------------------------------------------------


def summarize(runs: list[Run], args) -> dict:
    summary = {}
    for workload in WORKLOAD_NAMES:
        mine = [r for r in runs if r.workload == workload]
        if not mine:
            continue
        entry = {"target": TARGETS[workload], "sides": {}}
        for side in (*FLOOR_SIDES, "ours", "peer"):
            side_runs = [r for r in mine if r.side == side]
            if not side_runs:
                continue
            valid = [r for r in side_runs if r.exit_code == 0 and not r.problem] or side_runs
            entry["sides"][side] = {
                "median_wall_s": round(statistics.median(r.wall_s for r in valid), 3),
                "walls_s": [r.wall_s for r in side_runs],
                "failed_runs": sum(1 for r in side_runs if r.exit_code != 0 or r.problem),
                "image_bytes_moved": max(r.image_bytes_moved for r in side_runs),
                "peak_rss_mib": max(r.peak_rss_mib for r in side_runs),
                "max_disk_write_bytes": max(r.disk_write_bytes for r in side_runs),
            }
        sides = entry["sides"]
        if "ours" in sides and "floor" in sides:
            entry["ours_over_floor"] = round(sides["ours"]["median_wall_s"] / sides["floor"]["median_wall_s"], 3)
        if "ours" in sides and "floor+v" in sides:
            entry["ours_over_verifying_floor"] = round(
                sides["ours"]["median_wall_s"] / sides["floor+v"]["median_wall_s"], 3
            )
        if "ours" in sides and "peer" in sides:
            entry["ours_over_peer"] = round(sides["ours"]["median_wall_s"] / sides["peer"]["median_wall_s"], 3)
        if "floor+s" in sides:  # what sending the size does to Glance's own floor
            entry["floor_with_size_over_floor"] = round(
                sides["floor+s"]["median_wall_s"] / sides["floor"]["median_wall_s"], 3
            )
        if workload.startswith("a-many") and "ours" in sides:
            count = args.many_images
            for floor, key in (("floor", "ms_per_image_over_floor"), ("floor+v", "ms_per_image_over_verifying_floor")):
                if floor in sides:
                    over = sides["ours"]["median_wall_s"] - sides[floor]["median_wall_s"]
                    entry[key] = round(over / count * 1000, 1)
        b_sides = summary.get("b", {}).get("sides", {})
        for reference, key in (("peer", "ours_over_peer"), ("floor", "ours_over_floor")):
            if workload in ("b-full", "b-cron") and reference in b_sides and "ours" in sides and reference not in sides:
                entry[key] = round(sides["ours"]["median_wall_s"] / b_sides[reference]["median_wall_s"], 3)
        entry["met"] = _met(workload, entry, args)
        summary[workload] = entry
    return summary


def _met(workload: str, entry: dict, args) -> bool | None:
    ours = entry["sides"].get("ours")
    if ours is None:
        return None
    ok = ours["failed_runs"] == 0
    if workload == "a":
        return ok and entry.get("ours_over_floor", 99) <= 1.15 and entry.get("ours_over_peer", 99) <= 0.5
    if workload == "a-rbd":
        return ok and entry.get("ours_over_verifying_floor", 99) <= 1.10 and entry.get("ours_over_peer", 99) <= 0.5
    if workload.startswith("a-many"):
        return ok and entry.get("ms_per_image_over_floor", 999) <= 30
    if workload in ("b", "b-cron"):
        return (
            ok
            and ours["image_bytes_moved"] == 0
            and entry.get("ours_over_floor", 99) <= 1.25
            and entry.get("ours_over_peer", 99) <= 0.35
        )
    if workload == "b-full":
        return ok and entry.get("ours_over_peer", 99) <= 0.9
    if workload == "c":
        return ok and ours["median_wall_s"] <= 1.0
    if workload == "rss":  # "no image bytes on local disk": well under one image chunk of writes
        return ok and ours["peak_rss_mib"] <= 150 and ours["max_disk_write_bytes"] < MIB
    return None


def print_table(summary: dict, args) -> None:
    print()
    print(
        f"sync benchmark: rounds {args.rounds}, workload a = {args.images} x {args.image_mib} MiB, "
        f"many = {args.many_images} x {args.many_image_kib} KiB, rss = 1 x {args.rss_image_mib} MiB, "
        f"concurrency {args.parallel}, Glance stores {args.glance_stores}"
    )
    header = (
        f"{'workload':<9}{'side':<8}{'median s':>9}  {'runs s':<26}{'img MiB moved':>14}"
        f"{'peak RSS MiB':>13}{'disk write MiB':>15}"
    )
    print(header)
    print("-" * len(header))
    names = WORKLOAD_NAMES
    for workload, entry in summary.items():
        for side, s in entry["sides"].items():
            walls = ", ".join(f"{w:.2f}" for w in s["walls_s"])
            failed = f"  ({s['failed_runs']} failed)" if s["failed_runs"] else ""
            print(
                f"{names[workload]:<9}{side:<8}{s['median_wall_s']:>9.2f}  {walls:<26}"
                f"{s['image_bytes_moved'] / MIB:>14.1f}{s['peak_rss_mib']:>13.1f}"
                f"{s['max_disk_write_bytes'] / MIB:>15.2f}{failed}"
            )
    print()
    for workload, entry in summary.items():
        ratios = [label.format(entry[key]) for key, label in RATIO_LABELS if key in entry]
        verdict = {True: "MET", False: "MISSED", None: "-"}[entry["met"]]
        print(f"{names[workload]:<9} {', '.join(ratios) or '':<58} target: {entry['target']}  -> {verdict}")


def print_traces(bench: Bench) -> None:
    for title, sides in bench.traces.items():
        if title in (TRACE_B, TRACE_B_FULL):
            breakdown.print_side_by_side(title, sides)
        else:
            breakdown.print_one_image(title, sides, bench.args.many_images)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-mib", type=int, default=512)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--rss-image-mib", type=int, default=2048, help=argparse.SUPPRESS)
    parser.add_argument(
        "--parallel",
        type=int,
        default=4,
        help="concurrency of ours (max_parallel) and of the floors (default: %(default)s, the engine's)",
    )
    parser.add_argument("--many-images", type=int, default=64, help="workload many: images (default: %(default)s)")
    parser.add_argument(
        "--many-image-kib", type=int, default=1024, help="workload many: KiB each (default: %(default)s)"
    )
    parser.add_argument("--only", default="a,b,many,c,rss", help="workloads to run (default: %(default)s)")
    parser.add_argument(
        "--glance-stores", default=",".join(GLANCE_STORES), help="Glance stores for a and many (default: %(default)s)"
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / ".work" / "bench")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (images, logs) at the end")
    args = parser.parse_args(argv)
    args.only_set = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = args.only_set - {"a", "b", "many", "c", "rss"}
    if unknown or not args.only_set:
        parser.error(f"--only takes a comma-separated subset of a,b,many,c,rss (got {args.only!r})")
    args.store_list = [store.strip() for store in args.glance_stores.split(",") if store.strip()]
    if not args.store_list or set(args.store_list) - set(GLANCE_STORES):
        parser.error(f"--glance-stores takes a comma-separated subset of {','.join(GLANCE_STORES)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


@contextlib.contextmanager
def start_cloud(bench: Bench, store: str):
    """The local cloud with Glance on `store` as bench.cloud for the block, stopped after it."""
    t0 = time.monotonic()
    # Room in Ceph's in-memory OSD for one side's images of workload a, twice over.
    osd_bytes = max(1 << 30, 2 * bench.args.images * bench.args.image_mib * MIB + (1 << 30))
    bench.cloud = LocalCloud(bench.workdir / f"cloud-{store}", glance_store=store, ceph_osd_bytes=osd_bytes)
    try:
        bench.cloud.start()
        print(f"local cloud up in {time.monotonic() - t0:.1f} s (glance on {store}, {bench.cloud.glance_url})",
              flush=True)  # fmt: skip
        yield bench.cloud
    finally:
        bench.cloud.stop()
        bench.cloud = None


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    for store in GLANCE_STORES:
        LocalCloud.kill_leftovers(workdir / f"cloud-{store}")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    bench = Bench(args, workdir)
    # The engine's bytecode, as the charm's install writes it on the unit (the environment may forbid
    # writing it as a side effect of imports, which would make each run compile the engine).
    compileall.compile_dir(ROOT / "src" / "simplestreams_sync", maxlevels=0, quiet=1)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks below stop what was started.
    signal.signal(signal.SIGTERM, _interrupt)
    only = args.only_set
    try:
        with ExitStack() as stack:
            key = stack.enter_context(make_test_key(workdir / "gpg"))
            bench.keyring = key.keyring
            stack.callback(bench.kill_child)
            for store in args.store_list:
                if not only & {"a", "b", "many"} | ({"rss"} if store == "file" else set()):
                    continue
                with start_cloud(bench, store):
                    workloads_on(bench, key, store)
                    if "rss" in only and store == "file":
                        workload_rss(bench, key)
            if "rss" in only and "file" not in args.store_list:
                with start_cloud(bench, "file"):
                    workload_rss(bench, key)
            if "c" in only:
                workload_c(bench)
    except KeyboardInterrupt:
        print("\ninterrupted: everything started has been stopped", file=sys.stderr)
        return 130
    finally:
        summary = summarize(bench.runs, args)
        results = {
            "args": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if k not in ("only_set", "store_list")
            },
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "summary": summary,
            "runs": [asdict(r) for r in bench.runs],
            "where_the_time_goes": bench.traces,
        }
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
        (workdir / "results.json").write_text(json.dumps(results, indent=1))
    print_table(summary, args)
    print_traces(bench)
    print(f"\nresults: {workdir / 'results.json'}")
    return 0 if all(entry["met"] is not False for entry in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
