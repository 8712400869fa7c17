"""Which addresses a set of processes listens on, read from /proc (no `ss` or `netstat` needed).

`listeners(pids)` maps each listening socket (TCP in LISTEN, UDP bound) held by those processes to
"proto host:port"; `descendants(pids)` adds every child process, so a service's workers count as the
service's. Linux only: /proc/net/{tcp,tcp6,udp,udp6} give the sockets by inode, /proc/<pid>/fd which
process holds them.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"  # a bound UDP socket that is not connected: it receives from anyone


def _address(hex_address: str) -> tuple[str, int]:
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    # The kernel prints each 32-bit word in host (little-endian) order.
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw), int(port_hex, 16)


def listening_sockets() -> dict[int, str]:
    """inode -> 'tcp 127.0.0.1:9042' for every listening socket of this network namespace."""
    found = {}
    for proto, state in (("tcp", TCP_LISTEN), ("tcp6", TCP_LISTEN), ("udp", UDP_UNCONNECTED),
                         ("udp6", UDP_UNCONNECTED)):
        path = Path("/proc/net") / proto
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != state:
                continue
            host, port = _address(fields[1])
            found[int(fields[9])] = f"{proto} {'[' + host + ']' if ':' in host else host}:{port}"
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:  # gone meanwhile
        pass
    return inodes


def descendants(roots: set[int]) -> set[int]:
    """The roots and every process below them."""
    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - found
        found |= frontier
    return found


def listeners(pids: set[int]) -> dict[int, set[str]]:
    """pid -> the addresses it listens on (only pids that listen at all)."""
    sockets = listening_sockets()
    held = {pid: {sockets[i] for i in socket_inodes(pid) if i in sockets} for pid in pids}
    return {pid: addresses for pid, addresses in held.items() if addresses}


def is_loopback(address: str) -> bool:
    """'tcp 127.0.0.1:9042', 'tcp6 [::1]:8083', 'tcp6 [::ffff:127.0.0.1]:19092' -> True."""
    host = address.split(" ", 1)[1].rsplit(":", 1)[0].strip("[]")
    ip = ipaddress.ip_address(host)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback
