#!/usr/bin/env python3
"""One gateway in front of runners on 1, 2 and 3 simulated hosts (network namespaces joined by veth pairs,
made here and removed at the end; root needed), in one run:

- requests/s through the gateway with C concurrent keep-alive clients, and the latency of one client,
  against the same requests sent straight to one host's runner (its key read from that host's state):
  the added latency is the difference of the medians;
- the failover gap: a host's link is cut while a client sends requests back to back; the time from the
  cut to the first success on another host, and how many requests failed meanwhile.

The route is llama-server's /tokenize (relayed like any model route: resolve, lease, runner, release)
so the runner's own work is small and the gateway's share shows. Every host runs on this machine's cores,
so more hosts add no compute here: what the figures show is the gateway's cost and its spreading.

Usage: sudo python3 scripts/bench_hosts.py [--seconds 5] [--clients 16]"""
import argparse, http.client, json, os, statistics, sys, tempfile, threading, time

from benchlib import MODEL, Mesh, pct, rpc
from netns import Fleet

PORT = 7070
BODY = json.dumps({"model": "smol", "content": "The quick brown fox jumps over the lazy dog."})


def post(conn, path, body, headers=None):
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    r = conn.getresponse()
    data = r.read()
    return r.status, r.getheader("x-llama-runner-host"), data


def latency(host, port, n, headers=None, path="/tokenize"):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        status, _, data = post(conn, path, BODY, headers)
        if status != 200:
            raise SystemExit(f"{host}:{port}{path} answered {status}: {data[:200]!r}")
        out.append((time.perf_counter() - t) * 1000)
    conn.close()
    return out


def throughput(port, clients, seconds):
    counts, spread, stop = [0] * clients, {}, time.time() + seconds
    lock = threading.Lock()

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.time() < stop:
            status, host, data = post(conn, "/tokenize", BODY)
            if status != 200:
                raise SystemExit(f"gateway answered {status}: {data[:200]!r}")
            counts[i] += 1
            with lock:
                spread[host] = spread.get(host, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.time() - start), spread


def wait(what, check, timeout=60):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def hosts_up(front, names):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", front.api, timeout=5)
        conn.request("GET", "/api/hosts")
        hosts = {h["name"]: h for h in json.loads(conn.getresponse().read())}
        return all(hosts.get(n, {}).get("state") == "up" and any(r["model"] == "smol" and r["state"] == "ready" for r in hosts[n]["runners"])
                   for n in names)
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--latency-requests", type=int, default=300)
    args = ap.parse_args()
    if not Fleet.available():
        raise SystemExit("network namespaces are not available (run as root)")
    work = tempfile.mkdtemp(prefix="lr-bench-hosts-")
    secret = os.path.join(work, "secret")
    with open(secret, "w") as f:
        f.write(os.urandom(16).hex())
    os.chmod(secret, 0o600)
    net = Fleet(3)
    meshes = []
    try:
        models = {"models": {"smol": {"model_path": MODEL, "preload": True, "parameters": {"ctx_size": 1024, "parallel": 4}}}}
        for i, h in enumerate(net.hosts, 1):
            meshes.append(Mesh(f"lr-bench-h{i}-", {"runner_host": {"host": h["address"], "port": PORT, "secret_file": secret, "name": f"h{i}"}},
                               models, netns=h["ns"]))
        # The baseline: straight to host 1's runner, with its own key.
        h1 = meshes[0]
        wait("host 1's runner", lambda: any(r["state"] == "ready" for r in rpc(h1.runners_socket, "runners.list", timeout=5)))
        runner = next(r for r in rpc(h1.runners_socket, "runners.list", timeout=5) if r["model"] == "smol")
        key = open(os.path.join(h1.state, "run", "runner-keys", "smol.key")).read().strip()
        address, port = runner["endpoint"].split("//")[1].rsplit(":", 1)
        latency(address, int(port), 50, {"Authorization": f"Bearer {key}"})
        direct = latency(address, int(port), args.latency_requests, {"Authorization": f"Bearer {key}"})
        rows = []
        for k in (1, 2, 3):
            names = [f"h{i}" for i in range(1, k + 1)]
            front = Mesh("lr-bench-front-", {"hosts": {n: {"address": f"{net.hosts[i]['address']}:{PORT}", "secret_file": secret}
                                                       for i, n in enumerate(names)}}, {"models": {}}, bootstrap=False)
            meshes.append(front)
            wait(f"{k} hosts up with smol ready", lambda: hosts_up(front, names))
            latency("127.0.0.1", front.ollama, 50)
            through = latency("127.0.0.1", front.ollama, args.latency_requests)
            rps, spread = throughput(front.ollama, args.clients, args.seconds)
            rows.append((k, rps, spread, through))
            if k < 3:
                front.stop()
                meshes.remove(front)
        # Failover, on the 3-host gateway: requests back to back go to h1 (tied hosts are taken by name);
        # its link is cut.
        conn_target = ("127.0.0.1", front.ollama)
        stop, log = threading.Event(), []

        def hammer():
            while not stop.is_set():
                conn = http.client.HTTPConnection(*conn_target, timeout=10)
                try:
                    status, host, _ = post(conn, "/tokenize", BODY)
                    log.append((time.time(), status, host))
                except OSError:
                    log.append((time.time(), 0, None))
                conn.close()

        t = threading.Thread(target=hammer)
        t.start()
        time.sleep(1)
        cut = time.time()
        net.cut(1)
        wait("a success elsewhere", lambda: any(at > cut and s == 200 and h != "h1" for at, s, h in log), timeout=30)
        stop.set()
        t.join()
        first = min(at for at, s, h in log if at > cut and s == 200 and h != "h1")
        failed = sum(1 for at, s, _ in log if at > cut and s != 200)
        net.mend(1)

        print(f"/tokenize through one gateway; {args.clients} concurrent clients for {args.seconds:.0f} s; one client for latency "
              f"({args.latency_requests} requests); every host on this machine's {os.cpu_count()} cores")
        print()
        print("| hosts | requests/s | spread | latency p50 | p99 | added p50 (vs direct to a runner) |")
        print("|---:|---:|---|---:|---:|---:|")
        d50 = statistics.median(direct)
        print(f"| direct | – | – | {d50:.3f} ms | {pct(direct, 99):.3f} ms | – |")
        for k, rps, spread, through in rows:
            share = ", ".join(f"{h} {100 * n / sum(spread.values()):.0f} %" for h, n in sorted(spread.items(), key=lambda x: str(x[0])))
            print(f"| {k} | {rps:.0f} | {share} | {statistics.median(through):.3f} ms | {pct(through, 99):.3f} ms | "
                  f"+{statistics.median(through) - d50:.3f} ms |")
        print()
        print(f"failover: first success on another host {first - cut:.2f} s after h1's link was cut; {failed} requests failed meanwhile")
    finally:
        for m in meshes:
            try:
                m.stop()
            except Exception as e:
                print("stopping a mesh:", e, file=sys.stderr)
        net.remove()


if __name__ == "__main__":
    main()
