"""A torch backend whose workers write down every TCP socket they hold, for
tests/backends/test_data_parallel.py: every one must be bound to a loopback address. (Its own module,
imported only where torch is installed: a spawned worker unpickles the class by this module's name.)"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from backends.torch.backend import TorchBackend


def own_tcp_sockets() -> list[tuple[str, str]]:
    """(local address, state) of every TCP socket this process holds, from /proc (Linux)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((_address(fields[1].split(":")[0]), fields[3]))  # state 0A: listening
    return found


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word little-endian
    return str(ipaddress.ip_address(words))


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


class SocketReportingTorch(TorchBackend):
    """Each worker, after its first chunk, writes its sockets to $TRIGRAD_TEST_SOCKETS.<rank>."""

    def _train_steps(self, state, n, batches, record):
        out = super()._train_steps(state, n, batches, record)
        lines = [f"{address} {status}" for address, status in own_tcp_sockets()]
        Path(f"{os.environ['TRIGRAD_TEST_SOCKETS']}.{self._replica.rank}").write_text("\n".join(lines) + "\n")
        return out


def other_interface() -> str | None:
    """A network interface other than the loopback that has an IPv4 address (Linux), or None."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            if name in ("lo", "lo0"):
                continue
            try:
                fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                continue  # no address
            return name
    return None
