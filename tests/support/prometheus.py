"""A real Prometheus server (Debian's ``prometheus`` binary) on a free loopback port, configured
from the committed ``deploy/prometheus/prometheus.yml`` and rule files."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from stream.infra.localstack import die_with_parent, free_port
from tests.support.ops import PROMETHEUS, RULE_FILES, load_yaml

JOB = "engagement-stream"


def test_config(targets: list[str], interval: str = "1s") -> dict[str, Any]:
    """The committed configuration with the workers as static targets, a short scrape and rule
    interval, the rule files by absolute path and no Alertmanager."""
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(p) for p in RULE_FILES]
    config.pop("alerting", None)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": targets}]
    config["scrape_configs"] = [job]
    return config


class PrometheusServer:
    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(test_config(targets)))
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: run `bash deploy/local/run.sh setup`"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self._url("/-/ready"), timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready: {self.log.read_text()[-3000:]}")

    def _url(self, path: str, **params: str) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"http://127.0.0.1:{self.port}{path}{query}"

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a successful API answer; raises with Prometheus' error otherwise."""
        try:
            with urllib.request.urlopen(self._url(f"/api/v1/{path}", **params), timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result = data["result"]
        return result if isinstance(result, list) else [result]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
