"""Two network namespaces joined by a veth pair: separate hosts on one machine, for tests.

Traffic (LAN multicast included) never leaves the pair; everything is removed
at the end, also when the test fails. Needs root and iproute2: otherwise the
fixture skips with a one-line reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

__all__ = ["netns_pair", "netns_pair_fixture", "ip", "namespaces"]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def namespaces() -> set[str]:
    """The names of the network namespaces that exist now."""
    out = ip("netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@contextmanager
def netns_pair(subnet: str = "10.231.77") -> Iterator[tuple[tuple[str, str], tuple[str, str]]]:
    """Yield ``((ns_a, ip_a), (ns_b, ip_b))``; raise ``RuntimeError`` naming why it cannot be built.

    Each namespace has loopback up, one end of the veth pair with an address in
    ``subnet``.0/24, multicast on and a multicast route, so mDNS works between them.
    """
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise RuntimeError("needs root and iproute2 to create network namespaces")
    tag = f"{os.getpid() % 100000}"
    a, b, va, vb = f"lrna{tag}", f"lrnb{tag}", f"lva{tag}", f"lvb{tag}"
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", va, "type", "veth", "peer", "name", vb)
        ip("link", "set", va, "netns", a)
        ip("link", "set", vb, "netns", b)
        for ns, dev, addr in ((a, va, f"{subnet}.1/24"), (b, vb, f"{subnet}.2/24")):
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
    except subprocess.CalledProcessError as exc:
        for ns in (a, b):
            ip("netns", "del", ns, check=False)
        raise RuntimeError(f"cannot create network namespaces here: {exc.stderr.strip()}") from None
    try:
        yield (a, f"{subnet}.1"), (b, f"{subnet}.2")
    finally:
        for ns in (a, b):  # deleting a namespace deletes the veth end inside it, and so the pair
            ip("netns", "del", ns, check=False)


@pytest.fixture(name="netns_pair")
def netns_pair_fixture():
    """The :func:`netns_pair` as a fixture (import it into a test module); skips with the reason."""
    try:
        with netns_pair() as pair:
            yield pair
    except RuntimeError as exc:
        if "network namespaces" not in str(exc):
            raise
        pytest.skip(str(exc))
