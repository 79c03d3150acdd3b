"""Debian's Prometheus for the tests: started on a free port of 127.0.0.1 with the scrape jobs and rule
files a test gives, asked through its HTTP API, stopped by PID."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from tests.localcloud.web_server import free_port

DEADLINE = 120  # seconds Prometheus may take to scrape and evaluate: bounds a failure, never a wait
T = TypeVar("T")


def binary(name: str) -> str | None:
    """Prometheus or promtool (scripts/bootstrap installs Debian's prometheus), or None."""
    return shutil.which(name)


class Prometheus:
    def __init__(self, workdir: Path, scrape_jobs: list[dict], rule_files: list[Path]):
        self.workdir = workdir
        self.scrape_jobs = scrape_jobs
        self.rule_files = rule_files
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": self.scrape_jobs,
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        argv = [
            binary("prometheus") or "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with (self.workdir / "prometheus.log").open("w") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def api(self, path: str, **query: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        url += f"?{urllib.parse.urlencode(query)}" if query else ""
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]

    def query(self, expression: str) -> list[dict]:
        return self.api("query", query=expression)["result"]

    def up_targets(self) -> list[dict]:
        """The active targets once every one is up (else nothing)."""
        targets = self.api("targets")["activeTargets"]
        return targets if targets and all(target["health"] == "up" for target in targets) else []

    def firing(self) -> set[str]:
        return self.alerts("firing")

    def pending(self) -> set[str]:
        return self.alerts("pending")

    def alerts(self, state: str) -> set[str]:
        return {alert["labels"]["alertname"] for alert in self.api("alerts")["alerts"] if alert["state"] == state}

    def until(self, condition: Callable[[], T], what: str) -> T:
        """Ask until `condition()` is true (Prometheus works on its own clock), and return it."""
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            try:
                value = condition()
            except urllib.error.URLError:  # not listening yet
                value = None
            if value:
                return value
            time.sleep(0.2)
        log = (self.workdir / "prometheus.log").read_text()[-2000:]
        raise AssertionError(f"Prometheus never showed {what}; its log ends:\n{log}")
