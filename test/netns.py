"""Two test hosts on this machine: network namespaces joined by a veth pair, each with its own address (needs
root and iproute2's `ip`, as CI has). Processes started with `host.popen(...)` see only their namespace's
network: the loopback and the veth link to the other host."""
import contextlib
import os
import shutil
import subprocess

SUBNET = "10.231.%d.%d"   # the test hosts' own link, inside the namespaces only


def available():
    """(True, '') when namespaces can be made here, else (False, why)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    if not shutil.which("ip"):
        return False, "iproute2's `ip` is not installed"
    return True, ""


def _ip(*args):
    subprocess.run(["ip"] + list(args), check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class Host(object):
    def __init__(self, namespace, address, name=None):
        self.namespace, self.address, self.name = namespace, address, name

    def popen(self, command, **kwargs):
        """subprocess.Popen of `command` inside this host's namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespace] + list(command), **kwargs)


def _write_hosts_file(namespace, hosts):
    """/etc/netns/NAMESPACE/hosts, which `ip netns exec` mounts over /etc/hosts: both hosts' names resolve."""
    directory = os.path.join("/etc/netns", namespace)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n" + "".join("%s %s\n" % (h.address, h.name) for h in hosts if h.name))


@contextlib.contextmanager
def two_hosts(tag="zoo", host_names=None):
    """Yields (host_a, host_b) joined by a veth pair; removes both namespaces (and so the link) afterwards.
    `host_names` (two names): each namespace gets a hosts file in which both names resolve to the hosts' addresses,
    as a cluster's node names do."""
    suffix = "%s%d" % (tag, os.getpid() % 100000)
    names = ["%s-a" % suffix, "%s-b" % suffix]
    links = ["va%d" % (os.getpid() % 100000), "vb%d" % (os.getpid() % 100000)]
    net = os.getpid() % 250 + 1
    hosts = [Host(names[i], SUBNET % (net, i + 1), host_names[i] if host_names else None) for i in range(2)]
    try:
        if host_names:
            for host in hosts:
                _write_hosts_file(host.namespace, hosts)
        for host in hosts:
            _ip("netns", "add", host.namespace)
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        _ip("link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for host, link in zip(hosts, links):
            _ip("link", "set", link, "netns", host.namespace)
            _ip("-n", host.namespace, "addr", "add", host.address + "/24", "dev", link)
            _ip("-n", host.namespace, "link", "set", link, "up")
        yield hosts[0], hosts[1]
    finally:
        for host in hosts:
            subprocess.run(["ip", "netns", "delete", host.namespace], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            shutil.rmtree(os.path.join("/etc/netns", host.namespace), ignore_errors=True)
