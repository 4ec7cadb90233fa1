"""Simulated machines for the multi-host tests: network namespaces joined to this one by veth pairs, all
made by the test and removed by it (also when it fails). Host i lives in namespace lrh<i>-<tag> at
10.<b>.<i>.2; the root end of its pair, lrv<i>-<tag>, is 10.<b>.<i>.1. Nothing else of the machine's
network is touched, and every address exists only on those interfaces."""
import os
import subprocess


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class Fleet:
    def __init__(self, count):
        tag = os.getpid() % 100000
        self.octet = 100 + os.getpid() % 100
        self.hosts = []
        try:
            for i in range(1, count + 1):
                ns, veth, peer = f"lrh{i}-{tag}", f"lrv{i}-{tag}", f"lrp{i}-{tag}"
                ip("netns", "add", ns)
                self.hosts.append({"ns": ns, "veth": veth, "address": f"10.{self.octet}.{i}.2"})
                ip("link", "add", veth, "type", "veth", "peer", "name", peer)
                ip("link", "set", peer, "netns", ns)
                ip("addr", "add", f"10.{self.octet}.{i}.1/24", "dev", veth)
                ip("link", "set", veth, "up")
                ip("netns", "exec", ns, "ip", "addr", "add", f"10.{self.octet}.{i}.2/24", "dev", peer)
                ip("netns", "exec", ns, "ip", "link", "set", peer, "up")
                ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise

    def cut(self, i):
        """The host's link goes down: its packets are dropped, its connections stay open and silent."""
        ip("link", "set", self.hosts[i - 1]["veth"], "down")

    def mend(self, i):
        ip("link", "set", self.hosts[i - 1]["veth"], "up")

    def remove(self):
        """Deleting a namespace deletes its end of the pair, and so the pair."""
        for h in self.hosts:
            ip("netns", "del", h["ns"], check=False)
            ip("link", "del", h["veth"], check=False)
        self.hosts = []

    @staticmethod
    def available():
        probe = f"lrprobe-{os.getpid() % 100000}"
        ok = ip("netns", "add", probe, check=False).returncode == 0
        ip("netns", "del", probe, check=False)
        return ok
