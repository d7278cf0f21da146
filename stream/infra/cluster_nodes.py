"""What a local Redis Cluster's nodes are and where they listen: ports picked so that the
cluster bus (client port + 10000) is free too, ``CLUSTER NODES`` parsed, and a node's live
description. Used by :mod:`stream.infra.redis_cluster`, which starts and breaks the cluster."""

from __future__ import annotations

import random
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stream.infra.localstack import LocalStackError

__all__ = [
    "ANSI_ESCAPE",
    "BUS_PORT_OFFSET",
    "CLUSTER_SLOTS",
    "MAX_CLIENT_PORT",
    "UNHEALTHY_FLAGS",
    "ClusterNode",
    "NodeView",
    "RedisClusterError",
    "Role",
    "find_redis_cli",
    "parse_cluster_nodes",
    "pick_cluster_ports",
]

CLUSTER_SLOTS = 16384
# Redis Cluster's bus listens on the client port + 10000, so a client port must stay below this.
BUS_PORT_OFFSET = 10000
MAX_CLIENT_PORT = 65535 - BUS_PORT_OFFSET  # 55535
# Node flags under which a node cannot be counted on (it is failing, or not yet/no longer known).
UNHEALTHY_FLAGS = frozenset({"fail", "fail?", "handshake", "noaddr"})

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

Role = Literal["primary", "replica", "down"]


class RedisClusterError(LocalStackError):
    """The local cluster could not be started, or did not reach the state that was waited for."""


def find_redis_cli() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        raise RedisClusterError(
            "redis-cli not found: it creates and reshards the cluster; it comes with "
            "redis-server (Debian/Ubuntu: apt-get install redis-tools)"
        )
    return path


def _port_range() -> range:
    """Client ports whose bus port (+10000) stays out of the kernel's ephemeral range too.

    An outgoing connection (any client on this machine) can take any ephemeral port at any moment,
    including the bus port we checked a millisecond ago; with the default range (32768-60999)
    ports 10000-22767 keep both the client and the bus port outside it. If the machine's range
    leaves no such room, fall back to anything below 55536 and rely on the bind test alone.
    """
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        ephemeral_low = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    high = min(ephemeral_low - BUS_PORT_OFFSET, MAX_CLIENT_PORT + 1)
    if high - 10000 >= 1000:
        return range(10000, high)
    return range(1024, MAX_CLIENT_PORT + 1)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_cluster_ports(count: int, exclude: set[int] | None = None) -> list[int]:
    """``count`` client ports P that are free, as are their cluster-bus ports P + 10000."""
    taken = set(exclude or ())
    candidates = _port_range()
    ports: list[int] = []
    for _ in range(5000):
        if len(ports) == count:
            return ports
        port = random.choice(candidates)
        bus = port + BUS_PORT_OFFSET
        if {port, bus} & taken or not (_bindable(port) and _bindable(bus)):
            continue
        ports.append(port)
        taken.update({port, bus, port - BUS_PORT_OFFSET})  # no node's bus on another's port
    raise RedisClusterError(f"could not find {count} free port pairs (P and P+10000)")


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: a node as some node of the cluster sees it."""

    node_id: str
    port: int  # 0 while the node's address is unknown ("noaddr")
    flags: frozenset[str]
    primary_id: str | None  # the primary of a replica; None for a primary
    link_connected: bool
    slots: tuple[tuple[int, int], ...]  # owned slot ranges, inclusive
    open_slots: tuple[str, ...]  # "[slot->-id]" / "[slot-<-id]" while a slot is migrating

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def healthy(self) -> bool:
        return not (self.flags & UNHEALTHY_FLAGS)


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """Parse ``CLUSTER NODES`` (``<id> <ip:port@cport[,host]> <flags> <primary> ... <slots>``)."""
    views: list[NodeView] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@", 1)[0]
        port_text = address.rsplit(":", 1)[-1]
        slots: list[tuple[int, int]] = []
        open_slots: list[str] = []
        for item in parts[8:]:
            if item.startswith("["):
                open_slots.append(item)
            elif "-" in item:
                low, high = item.split("-", 1)
                slots.append((int(low), int(high)))
            else:
                slots.append((int(item), int(item)))
        views.append(
            NodeView(
                node_id=parts[0],
                port=int(port_text) if port_text.isdigit() else 0,
                flags=frozenset(parts[2].split(",")),
                primary_id=None if parts[3] == "-" else parts[3],
                link_connected=parts[7] == "connected",
                slots=tuple(sorted(slots)),
                open_slots=tuple(open_slots),
            )
        )
    return views


@dataclass(frozen=True)
class ClusterNode:
    """A node of the local cluster as it is now (the role is queried, not remembered)."""

    port: int
    pid: int | None  # None while the process is not running (killed, not restarted)
    role: Role  # as the node itself says; "down" if not running or not answering
    node_id: str
    primary_port: int | None = None  # for a replica: the port of the primary it follows
    slots: tuple[tuple[int, int], ...] = ()  # for a primary: the slot ranges it owns

    @property
    def slot_count(self) -> int:
        return sum(high - low + 1 for low, high in self.slots)
