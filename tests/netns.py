"""Separate hosts on one machine, for tests: network namespaces joined by veth pairs.

:func:`netns_pair` is two namespaces on one veth pair; :func:`testbed` is a LAN of
namespaces on a bridge, with optional bandwidth caps (tbf) and hosts behind a
masquerading NAT router (iptables). Traffic (LAN multicast included) never
leaves the namespaces made here; everything is removed at the end, also when the
test fails. Needs root and iproute2: otherwise the
fixture skips with a one-line reason.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pytest

__all__ = ["netns_pair", "netns_pair_fixture", "ip", "namespaces", "Host", "Lan", "testbed", "lan_factory"]


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


# -- a LAN of namespaces on one bridge, with optional bandwidth caps and a NAT router ---------------

LAN = "10.77.0"  # the bridge's /24: reachable peers .1.., the NAT router's outside address .254
HOME = "10.77.1"  # the /24 behind the NAT router (its inside address .1)


@dataclass(frozen=True)
class Host:
    """One separate machine of a :class:`Lan`: a namespace with one address."""

    name: str  # "p0", "n0", ...: short, for data dirs and messages
    ns: str  # the network namespace
    ip: str
    natted: bool = False

    def argv(self, *cmd: str) -> list[str]:
        """``cmd`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *cmd]


@dataclass
class Lan:
    """Namespaces this test made: hosts on one bridge, and maybe a NAT router with hosts behind it."""

    tag: str
    switch: str
    reachable: list[Host]
    natted: list[Host]
    router: str | None
    rate_mbit: float | None
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def hosts(self) -> list[Host]:
        return [*self.reachable, *self.natted]

    @property
    def namespaces(self) -> list[str]:
        return [h.ns for h in self.hosts] + [self.switch] + ([self.router] if self.router else [])

    def popen(self, host: Host, cmd: list[str], **kw) -> subprocess.Popen:
        """Start ``cmd`` in ``host``'s namespace; it is killed (if still running) when the testbed closes."""
        proc = subprocess.Popen(host.argv(*cmd), **kw)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=check, capture_output=True, text=True)

    def cut(self, inside: Host, outside: Host) -> None:
        """Drop at the router everything ``inside`` (behind the NAT) sends to ``outside``: that
        pair can meet only through a relay, as two peers behind different NATs would."""
        self.run(self.router, "iptables", "-I", "FORWARD", "-s", inside.ip, "-d", outside.ip, "-j", "DROP")

    def qdiscs(self) -> dict[str, str]:
        """``tc qdisc show`` of every host's link (for a test to check its caps)."""
        return {h.name: self.run(h.ns, "tc", "qdisc", "show", "dev", "eth0").stdout.strip() for h in self.hosts}


_beds = itertools.count()


def _tbf(ns: str, dev: str, rate_mbit: float) -> None:
    # burst: a few full-size frames (at least rate/HZ); latency bounds the queue (then TCP backs off).
    ip("netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate_mbit}mbit",
       "burst", "32kb", "latency", "100ms")


@contextmanager
def testbed(reachable: int, *, natted: int = 0, rate_mbit: float | None = None) -> Iterator[Lan]:
    """Build a LAN of separate hosts in network namespaces; tear it all down on exit.

    ``reachable`` hosts (namespaces ``lnp<tag>-<i>``, addresses ``10.77.0.<i+1>``) sit on one
    bridge in a namespace of its own (``lnsw<tag>``), so nothing is added to the machine's own
    namespace and no traffic leaves the testbed: there is no default route anywhere. Each has
    loopback, ``eth0`` with multicast on and a multicast route (mDNS works on the bridge).

    ``natted`` hosts (``10.77.1.<i+2>``) sit on a second bridge inside a router namespace
    (``lnr<tag>``: ``10.77.0.254`` on the outer bridge, ``10.77.1.1`` inside) that forwards and
    masquerades their traffic with iptables: they can dial out to the bridge, nothing outside
    can dial in (the outer hosts have no route to ``10.77.1.0/24``, and the router drops every
    forwarded packet from outside that is not part of a connection they opened).

    ``rate_mbit`` caps every host's link both ways (a ``tbf`` qdisc on each end of its veth).

    On exit every process started with :meth:`Lan.popen` is killed, the iptables rules are
    flushed and every namespace is deleted (with them their links and bridges); then it checks
    that none is left, and that no link or iptables rule of it is in the machine's own namespace.

    Raises:
        RuntimeError: not root, or ``ip`` (or, for NAT, ``iptables``) is missing; the message says which.
    """
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise RuntimeError("needs root and iproute2 to create network namespaces")
    if rate_mbit is not None and not shutil.which("tc"):
        raise RuntimeError("needs tc (iproute2) to cap bandwidth in network namespaces")
    if natted and not shutil.which("iptables"):
        raise RuntimeError("needs iptables for the NAT router namespace (apt-get install iptables)")
    tag = f"{os.getpid() % 100000}{chr(97 + next(_beds) % 26)}"
    switch = f"lnsw{tag}"
    hosts = [Host(f"p{i}", f"lnp{tag}-{i}", f"{LAN}.{i + 1}") for i in range(reachable)]
    inside = [Host(f"n{i}", f"lnn{tag}-{i}", f"{HOME}.{i + 2}", natted=True) for i in range(natted)]
    router = f"lnr{tag}" if natted else None
    bed = Lan(tag, switch, hosts, inside, router, rate_mbit)
    try:
        ip("netns", "add", switch)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        ip("-n", switch, "link", "set", "lo", "up")
        for i, h in enumerate(hosts):
            _attach(h.ns, f"{h.ip}/24", switch, "br0", f"port{i}", rate_mbit)
        if router:
            _attach(router, f"{LAN}.254/24", switch, "br0", "portr", None, dev="wan")
            ip("-n", router, "link", "add", "br1", "type", "bridge")
            ip("-n", router, "addr", "add", f"{HOME}.1/24", "dev", "br1")
            ip("-n", router, "link", "set", "br1", "up")
            for i, h in enumerate(inside):
                _attach(h.ns, f"{h.ip}/24", router, "br1", f"home{i}", rate_mbit)
                ip("-n", h.ns, "route", "add", f"{LAN}.0/24", "via", f"{HOME}.1")
            for rule in (
                ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
                ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", f"{HOME}.0/24", "-o", "wan", "-j", "MASQUERADE"],
                ["iptables", "-A", "FORWARD", "-i", "br1", "-j", "ACCEPT"],  # out, and within the home LAN
                ["iptables", "-A", "FORWARD", "-i", "wan", "-o", "br1", "-m", "conntrack", "--ctstate",
                 "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                ["iptables", "-P", "FORWARD", "DROP"],
                ["iptables", "-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                 "-j", "ACCEPT"],
                ["iptables", "-A", "INPUT", "-i", "wan", "-j", "DROP"],
            ):
                bed.run(router, *rule)
    except subprocess.CalledProcessError as exc:
        _teardown(bed)
        raise RuntimeError(f"cannot create network namespaces here: {exc.stderr.strip() or exc}") from None
    try:
        yield bed
    finally:
        _teardown(bed)


def _attach(ns: str, addr: str, switch_ns: str, bridge: str, port: str, rate_mbit: float | None,
            dev: str = "eth0") -> None:
    """Create ``ns`` with ``dev`` (address ``addr``) plugged into ``bridge`` of ``switch_ns`` as ``port``."""
    if ns not in namespaces():
        ip("netns", "add", ns)
    ip("link", "add", dev, "netns", ns, "type", "veth", "peer", "name", port, "netns", switch_ns)
    ip("-n", switch_ns, "link", "set", port, "master", bridge, "up")
    ip("-n", ns, "addr", "add", addr, "dev", dev)
    ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
    if rate_mbit is not None:
        _tbf(ns, dev, rate_mbit)  # upload
        _tbf(switch_ns, port, rate_mbit)  # download


_OUR_LINKS = re.compile(r"^\d+: (port\d+|portr|home\d+|wan|br1)[@:]", re.MULTILINE)


def _leftovers_in_host(bed: Lan) -> list[str]:
    """Anything of this testbed in the machine's own namespace: a link, or an iptables rule naming its
    addresses (others, e.g. a Docker daemon, may change the machine's rules meanwhile: not ours)."""
    found = _OUR_LINKS.findall(ip("-o", "link", "show", check=False).stdout)
    if shutil.which("iptables-save"):
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        found += [line for line in rules.splitlines() if f"{LAN}." in line or f"{HOME}." in line]
    return found


def _teardown(bed: Lan) -> None:
    for proc in bed.procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if bed.router and bed.router in namespaces():
        for table in ("filter", "nat"):
            bed.run(bed.router, "iptables", "-t", table, "-F", check=False)
    for ns in bed.namespaces:  # a namespace's links, bridges and rules go with it
        ip("netns", "del", ns, check=False)
    left = [ns for ns in namespaces() if bed.tag in ns and ns.startswith("ln")]
    assert not left, f"network namespaces left behind: {left}"
    assert not _leftovers_in_host(bed), f"left in the machine's own namespace: {_leftovers_in_host(bed)}"


@pytest.fixture
def lan_factory():
    """``lan_factory(n, natted=0, rate_mbit=None)`` -> an entered :func:`testbed`, closed at teardown;
    skips the test with the reason when namespaces cannot be made here."""
    with ExitStack() as stack:
        def make(n: int, **kw) -> Lan:
            try:
                return stack.enter_context(testbed(n, **kw))
            except RuntimeError as exc:
                pytest.skip(str(exc))
        yield make
