#!/usr/bin/env python3
"""Server CPU of one multiplexed stream against 64 job streams (issue 20).

64 jobs each print a line every 100 ms. The same jobs are watched by one
`/jobs/events?ids=(all 64)` stream, or by 64 `/jobs/ID/events` streams, or
by nobody (the cost of running the jobs, common to both). The viewers' cost
is the server's cost minus nobody's; the goal is mux <= 1.0x separate.

  mux-cost.py BIN wall [ROUNDS]       one server, the three cases in turn for
                                      10 s each, ROUNDS times (default 3): the
                                      server's CPU time from
                                      /proc/PID/task/*/schedstat (ns), medians
  mux-cost.py BIN callgrind [ROUNDS]  a server under valgrind --tool=callgrind
                                      per case, 64 jobs of 30 lines watched
                                      from start to end: instructions, medians
                                      (spawning by posix_spawn: valgrind
                                      cannot follow the server's clone),
                                      per job event made (the count varies
                                      a little with the machine's load)
  mux-cost.py BIN steady [ROUNDS]     as callgrind, but jobs that never end
                                      and only the steady state counted:
                                      the counters are zeroed once the
                                      streams are open and their backlog
                                      sent, and dumped 10 s later
                                      (callgrind_control); instructions per
                                      job event made in that window, medians
                                      (setting up 64 connections, a fixed
                                      cost the short callgrind run divides
                                      among its events, is left out)
  mux-cost.py BIN memory [VIEWERS]    the server's RSS before and after
                                      VIEWERS (default 50) multiplexed
                                      streams of the 64 jobs that read
                                      nothing (a full socket buffer and
                                      what the server holds for them):
                                      the growth per viewer

MUX_COST_KEEP=1 keeps the callgrind files (for callgrind_annotate).
Only the server's own time counts (its children are other processes).
"""
import glob
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

JOBS = 64
CASES = ("none", "mux", "separate")


def start(argv, env=None):
    srv = subprocess.Popen(argv + ["--no-auth", "--listen", "127.0.0.1:0", "--keep-jobs", "1000"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    line = srv.stdout.readline().decode()
    url = line.split("on ", 1)[1].strip()
    host, port = url.split("//")[1].rstrip("/").split(":")
    return srv, url, (host, int(port))


def post(url, cmd):
    req = urllib.request.Request(url + "jobs?command=" + urllib.parse.quote(cmd), method="POST")
    return json.load(urllib.request.urlopen(req))["id"]


def jobs(url, lines):
    loop = "while :" if lines is None else "for i in $(seq 1 %d)" % lines
    return [post(url, "sh -c '%s; do echo line-of-output-%d; sleep 0.1; done'" % (loop, j))
            for j in range(JOBS)]


def targets(case, ids):
    if case == "mux":
        return ["/jobs/events?ids=" + ",".join(ids)]
    if case == "separate":
        return ["/jobs/%s/events" % i for i in ids]
    return []


def open_streams(addr, paths):
    socks = []
    for path in paths:
        s = socket.create_connection(addr)
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
        s.setblocking(False)
        socks.append(s)
    return socks


def drain(socks, until, stop_when_closed=False):
    """Reads every socket until `until` (or until all closed); bytes read."""
    got, live = 0, list(socks)
    while live and time.time() < until:
        ready, _, _ = select.select(live, [], [], 0.2)
        for s in ready:
            try:
                n = len(s.recv(65536))
            except (BlockingIOError, ConnectionError):
                continue
            got += n
            if n == 0:
                live.remove(s)
    if stop_when_closed and live:
        raise SystemExit("streams still open at the deadline")
    return got


def cpu_ns(pid):
    return sum(int(open(f).read().split()[0]) for f in glob.glob("/proc/%d/task/*/schedstat" % pid))


def wall(binary, rounds):
    srv, url, addr = start([binary])
    ids = jobs(url, None)
    time.sleep(2)
    results = {case: [] for case in CASES}
    for r in range(rounds):
        for case in CASES:
            socks = open_streams(addr, targets(case, ids))
            drain(socks, time.time() + 1.5)  # the held backlog goes out first
            c0 = cpu_ns(srv.pid)
            got = drain(socks, time.time() + 10) if socks else time.sleep(10) or 0
            c1 = cpu_ns(srv.pid)
            for s in socks:
                s.close()
            time.sleep(0.5)
            results[case].append((c1 - c0) / 1e9)
            print("round %d %-8s %.3f s CPU over 10 s, %d B read" % (r, case, (c1 - c0) / 1e9, got), flush=True)
    srv.terminate()
    srv.wait(10)
    return {case: statistics.median(v) for case, v in results.items()}, "s CPU"


def callgrind(binary, rounds):
    results = {case: [] for case in CASES}
    for r in range(rounds):
        for case in CASES:
            out = tempfile.mktemp(prefix="mux-cost-", suffix=".callgrind")
            # valgrind runs no clone(CLONE_VM | CLONE_FILES): posix_spawn,
            # the server's fallback, the same in every case.
            env = dict(os.environ, SSECOMMANDER_SPAWN="posix_spawn")
            srv, url, addr = start(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, binary], env)
            ids = jobs(url, 30)
            socks = open_streams(addr, targets(case, ids))
            if socks:
                got = drain(socks, time.time() + 120, stop_when_closed=True)
            else:
                got = 0
                for i in ids:  # wait for the jobs to end
                    for _ in range(600):
                        job = json.load(urllib.request.urlopen(url + "jobs/" + i))
                        if job["state"] != "running":
                            break
                        time.sleep(0.1)
            # Events made (a slow server reads two lines at once now and
            # then): the cost is compared per event.
            events = sum(json.load(urllib.request.urlopen(url + "jobs/" + i))["events"] for i in ids)
            srv.send_signal(signal.SIGTERM)
            srv.wait(60)
            total = None
            for line in open(out):
                if line.startswith(("totals:", "summary:")):
                    total = int(line.split()[1])
            if os.environ.get("MUX_COST_KEEP"):  # for callgrind_annotate
                print("kept", out)
            else:
                os.unlink(out)
            results[case].append(total / events)
            print("round %d %-8s %d Ir, %d events, %d Ir/event, %d B read" % (
                r, case, total, events, total / events, got), flush=True)
    return {case: statistics.median(v) for case, v in results.items()}, "Ir per event"


def events_made(url):
    """Events the jobs made so far (one request: the job list)."""
    return sum(job["events"] for job in json.load(urllib.request.urlopen(url + "jobs"))["jobs"])


def callgrind_total(path):
    total = None
    for line in open(path):
        if line.startswith(("totals:", "summary:")):
            total = int(line.split()[1])
    return total


def steady(binary, rounds):
    results = {case: [] for case in CASES}
    for r in range(rounds):
        for case in CASES:
            out = tempfile.mktemp(prefix="mux-steady-", suffix=".callgrind")
            env = dict(os.environ, SSECOMMANDER_SPAWN="posix_spawn")
            srv, url, addr = start(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, binary], env)
            ids = jobs(url, None)
            socks = open_streams(addr, targets(case, ids))
            drain(socks, time.time() + 5) if socks else time.sleep(5)  # setup, backlog
            e0 = events_made(url)
            subprocess.run(["callgrind_control", "-z", str(srv.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            got = drain(socks, time.time() + 10) if socks else time.sleep(10) or 0
            subprocess.run(["callgrind_control", "-d", str(srv.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            e1 = events_made(url)
            for sock in socks:
                sock.close()
            srv.send_signal(signal.SIGTERM)
            srv.wait(60)
            dumps = sorted(glob.glob(out + ".*"), key=os.path.getmtime)
            total = callgrind_total(dumps[0])
            for f in dumps + glob.glob(out):
                if os.environ.get("MUX_COST_KEEP"):
                    print("kept", f)
                else:
                    os.unlink(f)
            results[case].append(total / (e1 - e0))
            print("round %d %-8s %d Ir, %d events, %d Ir/event, %d B read" % (
                r, case, total, e1 - e0, total / (e1 - e0), got), flush=True)
    return {case: statistics.median(v) for case, v in results.items()}, "Ir per event"


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(binary, viewers):
    srv, url, addr = start([binary])
    ids = jobs(url, None)
    time.sleep(3)
    before = rss_kib(srv.pid)
    socks = []
    for _ in range(viewers):
        s = socket.create_connection(addr)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(("GET /jobs/events?ids=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % ",".join(ids)).encode())
        socks.append(s)
    time.sleep(8)  # the jobs write on; the viewers take nothing
    after = rss_kib(srv.pid)
    for s in socks:
        s.close()
    srv.terminate()
    srv.wait(10)
    print("RSS %d KiB with no viewer, %d KiB with %d multiplexed viewers reading nothing: %.1f KiB each" % (
        before, after, viewers, (after - before) / viewers))


def main():
    binary, how = sys.argv[1], sys.argv[2]
    if how == "memory":
        return memory(binary, int(sys.argv[3]) if len(sys.argv) > 3 else 50)
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    med, unit = {"wall": wall, "callgrind": callgrind, "steady": steady}[how](binary, rounds)
    mux, sep, none = med["mux"] - med["none"], med["separate"] - med["none"], med["none"]
    print("medians: no viewer %s %s; one mux stream %s; 64 job streams %s" % (
        med["none"], unit, med["mux"], med["separate"]))
    print("server cost, mux / separate: %.2fx" % (med["mux"] / med["separate"]))
    if how in ("wall", "steady"):
        # Per event, no viewer's cost is not a fixed share (spawning the
        # jobs is a fixed cost): subtracted only for CPU time over 10 s.
        print("the viewers' own cost (minus no viewer): %.2fx" % (mux / sep if sep > 0 else float("nan")))


if __name__ == "__main__":
    main()
