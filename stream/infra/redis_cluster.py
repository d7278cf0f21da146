"""A real Redis Cluster (primaries + replicas of Debian's ``redis-server``) owned by this process.

The single-Redis :class:`~stream.infra.localstack.LocalStack` cannot show what changes when the
state is spread over many Redis processes ("Scale past one Redis"): keys of one user landing on
different nodes, MOVED/ASK redirections during a live reshard, a primary dying and its replica
taking over. This module starts such a cluster on loopback so that tests and the benchmark run
against the real thing, never a fake, and gives them the failure injection they need
(:meth:`LocalRedisCluster.kill_primary`, :meth:`~LocalRedisCluster.restart_node`,
:meth:`~LocalRedisCluster.reshard`) plus waits that say precisely why the cluster is not healthy
when it does not become so in time.

Like LocalStack, children die with us (``PR_SET_PDEATHSIG``) and :meth:`LocalRedisCluster.stop`
is registered with :mod:`atexit`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from stream.infra.localstack import LocalStackError, _Child, die_with_parent, find_redis_server

__all__ = ["LocalRedisCluster"]

from stream.infra.cluster_nodes import (
    ANSI_ESCAPE,
    BUS_PORT_OFFSET,
    CLUSTER_SLOTS,
    ClusterNode,
    NodeView,
    RedisClusterError,
    find_redis_cli,
    parse_cluster_nodes,
    pick_cluster_ports,
)

log = logging.getLogger(__name__)


class LocalRedisCluster:
    """``primaries`` primaries with ``replicas`` replicas each, on loopback; start()/stop() or
    a context manager.

    ``replicas=0`` is for the benchmark (no replication traffic); failover needs ``replicas>=1``.
    ``node_timeout_ms`` is Redis' ``cluster-node-timeout``: it bounds how fast a dead primary is
    detected, so failover takes roughly that plus about a second of election.
    """

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2000,
        appendonly: bool = False,
        *,
        workdir: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if primaries < 3:
            # redis-cli --cluster create refuses fewer; a cluster of one or two primaries cannot
            # reach a majority to fail over anyway.
            raise ValueError("Redis Cluster needs at least 3 primaries")
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.primaries_count = primaries
        self.replicas_per_primary = replicas
        self.node_timeout_ms = node_timeout_ms
        self.appendonly = appendonly
        self.workdir = workdir
        self.start_timeout = start_timeout
        self._children: dict[int, _Child] = {}  # by client port, in start order
        self._node_ids: dict[int, str] = {}
        self._killed_replicas: dict[int, set[int]] = {}  # killed primary -> its replicas' ports
        self._own_workdir = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalRedisCluster:
        """Start every node, join them with ``redis-cli --cluster create``, wait until healthy."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="engagement-redis-cluster-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            total = self.primaries_count * (1 + self.replicas_per_primary)
            for _ in range(total):
                self._start_new_node()
            self._create()
            self.wait_ok(self.start_timeout)
            for port in self._children:
                self._node_ids[port] = self._myself(port).node_id
        except BaseException:
            self.stop()
            raise
        return self

    def _start_new_node(self) -> None:
        """Start one node on fresh ports, retrying if a port was taken since the bind test."""
        redis_server = find_redis_server()
        assert self.workdir is not None
        last_error: LocalStackError | None = None
        for _ in range(3):
            exclude = {p + d for p in self._children for d in (0, BUS_PORT_OFFSET)}
            port = pick_cluster_ports(1, exclude)[0]
            node_dir = self.workdir / f"node-{port}"
            node_dir.mkdir(parents=True, exist_ok=True)
            argv = [
                redis_server,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--save", "",
                "--appendonly", "yes" if self.appendonly else "no",
                "--protected-mode", "no",
                "--daemonize", "no",
                # A replica's full sync (at creation, after a restart) otherwise waits 5 s
                # for more replicas to share one diskless transfer: there is one per primary.
                "--repl-diskless-sync-delay", "0",
            ]  # fmt: skip
            child = _Child(f"redis-cluster-{port}", argv, port, node_dir / "redis.log")
            try:
                child.start(self.start_timeout)
            except LocalStackError as exc:
                last_error = exc
                if "Address already in use" in str(exc):
                    continue
                raise
            self._children[port] = child
            return
        raise RedisClusterError(f"could not start a cluster node: {last_error}")

    def _create(self) -> None:
        addresses = [f"127.0.0.1:{port}" for port in self._children]
        argv = [find_redis_cli(), "--cluster", "create", *addresses]
        argv += ["--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"]
        output = self._run_cli(argv, self.start_timeout, "redis-cli --cluster create")
        if "All 16384 slots covered" not in output:
            raise RedisClusterError(
                f"redis-cli --cluster create did not cover all slots:\n{output}"
            )

    def stop(self) -> None:
        """Stop every node (idempotent) and remove the working directory if we made it."""
        for child in reversed(list(self._children.values())):
            child.stop()
        self._children.clear()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._own_workdir = False
            self.workdir = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection

    @property
    def ports(self) -> list[int]:
        """Client ports of all nodes, running or not, in start order."""
        return list(self._children)

    @property
    def url(self) -> str:
        """A seed URL for cluster clients: the first node that is running.

        Any node gives a cluster client the whole topology; after the first node was killed,
        a client created from it would fail its very first connection, so skip dead ones.
        """
        running = [p for p, c in self._children.items() if c.running] or self.ports
        if not running:
            raise RedisClusterError("the cluster is not started")
        return f"redis://127.0.0.1:{running[0]}"

    @property
    def nodes(self) -> list[ClusterNode]:
        """Every node with its role as it reports it now (``down`` if not running/answering)."""
        return [self._describe(port) for port in self._children]

    def primaries(self) -> list[ClusterNode]:
        """Live primaries, ordered by the lowest slot they own (stable across restarts)."""
        found = [n for n in self.nodes if n.role == "primary"]
        return sorted(found, key=lambda n: (n.slots[0][0] if n.slots else CLUSTER_SLOTS, n.port))

    def replicas(self) -> list[ClusterNode]:
        """Live replicas, ordered by port."""
        return [n for n in self.nodes if n.role == "replica"]

    def node_id(self, port: int) -> str:
        """The cluster node id of the node on ``port`` (remembered, so known while it is down)."""
        if port not in self._node_ids:
            self._node_ids[port] = self._myself(port).node_id
        return self._node_ids[port]

    def cluster_nodes(self, port: int) -> list[NodeView]:
        """``CLUSTER NODES`` as the node on ``port`` sees the cluster."""
        return parse_cluster_nodes(self._command(port, "CLUSTER", "NODES"))

    def cluster_info(self, port: int) -> dict[str, str]:
        """``CLUSTER INFO`` of the node on ``port`` as a dict."""
        text = self._command(port, "CLUSTER", "INFO")
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key.strip(): value.strip() for key, value in pairs}

    def _describe(self, port: int) -> ClusterNode:
        child = self._children[port]
        pid = child.proc.pid if child.proc is not None and child.running else None
        node_id = self._node_ids.get(port, "")
        if pid is None:
            return ClusterNode(port, None, "down", node_id)
        try:
            views = self.cluster_nodes(port)
        except redis.RedisError:
            return ClusterNode(port, pid, "down", node_id)
        by_id = {v.node_id: v for v in views}
        me = next(v for v in views if "myself" in v.flags)
        if me.is_primary:
            return ClusterNode(port, pid, "primary", me.node_id, slots=me.slots)
        leader = by_id.get(me.primary_id or "")
        return ClusterNode(port, pid, "replica", me.node_id, leader.port if leader else None)

    def _myself(self, port: int) -> NodeView:
        return next(v for v in self.cluster_nodes(port) if "myself" in v.flags)

    def _call(self, port: int, *args: str) -> object:
        # A fresh sync client per call: this is infra code, called a few times per second at
        # most, and it must not keep sockets to nodes that are about to be killed.
        client = redis.Redis(
            host="127.0.0.1",
            port=port,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            decode_responses=True,
        )
        try:
            reply: object = client.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            client.close()
        return reply

    def _command(self, port: int, *args: str) -> str:
        # "CLUSTER", "NODES" as two words: redis-py's parser is keyed on "CLUSTER NODES", so the
        # reply stays the raw text that parse_cluster_nodes reads.
        reply = self._call(port, *args)
        return reply if isinstance(reply, str) else str(reply)

    def _live_ports(self) -> list[int]:
        return [port for port, child in self._children.items() if child.running]

    # ------------------------------------------------------------------ health

    def health_problem(self) -> str | None:
        """Why the cluster is not healthy right now, or None if it is.

        Healthy means, for every running node: ``cluster_state:ok`` with all 16384 slots assigned
        and none in PFAIL/FAIL; a replica's link to its primary is up (initial sync done); its
        ``CLUSTER NODES`` view knows every other running node as connected and not failing; no
        slot is half-migrated; every slot is owned by a running node; and all nodes see the very
        same slot map. ``cluster_state:ok`` alone is not enough:
        right after a primary is killed every node still says ok (nobody has noticed yet), and
        right after a reshard the nodes briefly disagree on who owns the moved slots.
        """
        live = self._live_ports()
        if not live:
            return "no node is running"
        live_set = set(live)
        maps: dict[int, tuple[tuple[int, int, int], ...]] = {}
        for port in live:
            try:
                info = self.cluster_info(port)
                views = self.cluster_nodes(port)
            except redis.RedisError as exc:
                return f"node {port} does not answer: {exc}"
            if info.get("cluster_state") != "ok":
                return f"node {port}: cluster_state:{info.get('cluster_state')}"
            for key in ("cluster_slots_assigned", "cluster_slots_ok"):
                if info.get(key) != str(CLUSTER_SLOTS):
                    return f"node {port}: {key}:{info.get(key)}"
            me = next((v for v in views if "myself" in v.flags), None)
            if me is not None and not me.is_primary:
                # A replica that never finished its first sync refuses to fail over ("data
                # too old"): a cluster whose replicas are not linked up is not healthy yet.
                link = self._info_field(port, "replication", "master_link_status")
                if link != "up":
                    return f"replica {port}: master_link_status:{link}"
            by_port = {v.port: v for v in views}
            for other in live_set - {port}:
                seen = by_port.get(other)
                if seen is None:
                    return f"node {port} does not know node {other}"
                if not seen.healthy or not seen.link_connected:
                    flags = ",".join(sorted(seen.flags))
                    link = "connected" if seen.link_connected else "disconnected"
                    return f"node {port} sees node {other} as {flags}, link {link}"
            slot_map: list[tuple[int, int, int]] = []
            for view in views:
                if view.open_slots:
                    return f"node {port} sees open slots on {view.port}: {view.open_slots[:3]}"
                if view.is_primary:
                    slot_map += [(low, high, view.port) for low, high in view.slots]
            slot_map.sort()
            covered = sum(high - low + 1 for low, high, _ in slot_map)
            if covered != CLUSTER_SLOTS:
                return f"node {port} sees {covered} of {CLUSTER_SLOTS} slots owned"
            dead_owners = {owner for _, _, owner in slot_map} - live_set
            if dead_owners:
                return f"node {port} sees slots owned by stopped node(s) {sorted(dead_owners)}"
            maps[port] = tuple(slot_map)
        first = live[0]
        for port in live[1:]:
            if maps[port] != maps[first]:
                return f"nodes {first} and {port} disagree on the slot map"
        return None

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Poll until :meth:`health_problem` finds none; raise with the last problem if not."""
        deadline = time.monotonic() + timeout
        problem = self.health_problem()
        while problem is not None:
            if time.monotonic() >= deadline:
                raise RedisClusterError(f"cluster not healthy after {timeout}s: {problem}")
            time.sleep(0.1)
            problem = self.health_problem()

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until every running replica has processed all its primary has written so far.

        Unlike ``WAIT`` this does not depend on which connection did the writes (``WAIT`` counts
        only the calling connection's writes, and a cluster client pools connections).
        """
        deadline = time.monotonic() + timeout
        for node in self.replicas():
            if node.primary_port is None:
                raise RedisClusterError(f"replica {node.port} has no known primary")
            target = self._repl_offset(node.primary_port, "master_repl_offset")
            while self._repl_offset(node.port, "slave_repl_offset") < target:
                if time.monotonic() >= deadline:
                    raise RedisClusterError(
                        f"replica {node.port} did not reach offset {target} of primary "
                        f"{node.primary_port} within {timeout}s"
                    )
                time.sleep(0.02)

    def _repl_offset(self, port: int, field_name: str) -> int:
        value = self._info_field(port, "replication", field_name)
        return int(value) if value is not None else -1

    def _info_field(self, port: int, section: str, field_name: str) -> str | None:
        reply = self._call(port, "INFO", section)  # redis-py parses INFO into a dict
        if not isinstance(reply, dict) or field_name not in reply:
            return None
        return str(reply[field_name])

    # ------------------------------------------------------------------ failure injection

    def kill_primary(self, index_or_port: int) -> int:
        """SIGKILL a primary, chosen by index in :meth:`primaries` (< 1024) or by port.

        SIGKILL, not SIGTERM: a clean shutdown lets a primary hand over to its replica
        gracefully, which is exactly what an outage does not do. Returns the killed port.
        """
        primaries = self.primaries()
        if index_or_port < 1024:
            if index_or_port >= len(primaries):
                raise ValueError(f"no primary #{index_or_port}: there are {len(primaries)}")
            port = primaries[index_or_port].port
        else:
            port = index_or_port
            if port not in {n.port for n in primaries}:
                raise ValueError(f"node {port} is not a running primary")
        victim = self._myself(port).node_id
        self._node_ids.setdefault(port, victim)
        # Its replicas as the victim itself sees them (one may be frozen — SIGSTOP, to keep it
        # from replicating the last writes — and unable to answer for itself), and as the
        # replicas report themselves: the victim's view lags a replica that joined recently
        # (gossip on a loaded machine), which left a failover with "no replica" once.
        self._killed_replicas[port] = {
            n.port for n in self.cluster_nodes(port) if n.primary_id == victim and n.port
        } | {n.port for n in self.replicas() if n.primary_port == port}
        child = self._children[port]
        proc, child.proc = child.proc, None
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        return port

    def cut_replication(self, primary_port: int) -> None:
        """Close a primary's links to its replicas (``CLIENT KILL TYPE replica``).

        With the replicas frozen (SIGSTOP) they cannot reconnect, so what the primary
        acknowledges from now on exists only on the primary: kill it next to lose those writes
        the way an asynchronous replica loses them in a real failover.
        """
        self._call(primary_port, "CLIENT", "KILL", "TYPE", "replica")

    def wait_failover(self, killed_port: int, timeout: float = 30.0) -> int:
        """Wait until a former replica of the killed primary is a primary and the cluster is ok.

        Returns the port of the promoted replica.
        """
        if killed_port not in self._killed_replicas:
            raise ValueError(f"node {killed_port} was not killed with kill_primary()")
        candidates = self._killed_replicas[killed_port]
        if not candidates:
            raise RedisClusterError(f"primary {killed_port} had no replica: nothing can take over")
        deadline = time.monotonic() + timeout
        while True:
            promoted = [n.port for n in self.primaries() if n.port in candidates and n.slots]
            problem = self.health_problem()
            if promoted and problem is None:
                return promoted[0]
            if time.monotonic() >= deadline:
                why = problem or f"none of replicas {sorted(candidates)} promoted"
                raise RedisClusterError(
                    f"no failover of primary {killed_port} within {timeout}s: {why}"
                )
            time.sleep(0.1)

    def restart_node(self, port: int) -> None:
        """Start a stopped node again with the same port, directory and ``nodes.conf``.

        It keeps its node id, so the cluster takes it back; a former primary whose slots went to
        its replica meanwhile learns that from the higher config epoch and becomes a replica.
        Call :meth:`wait_ok` to wait for that.
        """
        child = self._children[port]
        if child.running:
            raise ValueError(f"node {port} is running")
        child.start(self.start_timeout)
        self._killed_replicas.pop(port, None)

    def rejoin(self, port: int, timeout: float = 90.0) -> None:
        """Restart a stopped node and wait until the cluster is healthy with it; once, restart
        it again if it does not settle within half the timeout.

        A former primary restarted while another failed-over primary is still down has been
        seen (Redis 7.0, loaded 2-core CI machine) to stay at ``cluster_state:fail`` for over a
        minute. A second restart makes it re-read ``nodes.conf`` and re-handshake, which the
        healthy cluster then settles quickly; what it looked like first is logged.
        """
        self.restart_node(port)
        try:
            self.wait_ok(timeout / 2)
            return
        except RedisClusterError as exc:
            log.warning(
                "node %d did not rejoin (%s); restarting it once more:\n%s",
                port,
                exc,
                self.diagnose(port),
            )
        self._children[port].stop()
        self.restart_node(port)
        self.wait_ok(timeout / 2)

    def diagnose(self, port: int) -> str:
        """The node's own ``CLUSTER NODES`` view and the tail of its log, for error messages."""
        try:
            view = self._command(port, "CLUSTER", "NODES")
        except redis.RedisError as exc:
            view = f"(no answer: {exc})"
        tail = self._children[port].log_path.read_text(errors="replace")[-3000:]
        return f"CLUSTER NODES of {port}:\n{view}\nlog tail:\n{tail}"

    def reshard(self, slots: int, from_port: int, to_port: int, timeout: float = 60.0) -> None:
        """Move ``slots`` slots (with their keys) from one primary to another, live.

        Runs ``redis-cli --cluster reshard`` (it migrates key by key with MIGRATE, so clients
        see ASK/MOVED redirections meanwhile), then waits until all nodes agree on the new map.
        """
        from_id, to_id = self.node_id(from_port), self.node_id(to_port)
        argv = [find_redis_cli(), "--cluster", "reshard", f"127.0.0.1:{from_port}"]
        argv += ["--cluster-from", from_id, "--cluster-to", to_id]
        argv += ["--cluster-slots", str(slots), "--cluster-yes"]
        self._run_cli(argv, timeout, "redis-cli --cluster reshard")
        self.wait_ok(timeout)

    def _run_cli(self, argv: list[str], timeout: float, what: str) -> str:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                preexec_fn=die_with_parent,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RedisClusterError(f"{what} did not finish within {timeout}s") from exc
        # redis-cli colours its output even into a pipe: strip the ANSI codes for our errors.
        output = ANSI_ESCAPE.sub("", (done.stdout + done.stderr).decode(errors="replace"))
        # redis-cli reports some failures ("[ERR] ...") with exit status 0.
        if done.returncode != 0 or "[ERR]" in output:
            raise RedisClusterError(f"{what} failed (exit {done.returncode}):\n{output[-3000:]}")
        return output
