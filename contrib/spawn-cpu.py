#!/usr/bin/env python3
"""CPU per request of W3 (`true`), side by side: for each server, start it,
warm up, then run `probe spawn BASE N C [--keepalive]` and read the server's
own CPU (utime+stime) and its reaped children's (cutime+cstime) from
/proc/PID/stat before and after. Rounds interleave the servers.
Each server is stopped by its own process group (started in a new session).
usage: contrib/spawn-cpu.py N C ka|new ROUNDS 'name|start with {port}' ...
e.g.   contrib/spawn-cpu.py 3000 16 ka 5 "head|target/release/ssecommander --listen 127.0.0.1:{port} --no-auth --max-procs 20000 --max-conns 20000" "axum|../shared/peers/axum-sse/target/release/axum-sse --port {port}"
"""
import json, os, signal, socket, statistics, subprocess, sys, time
PROBE = os.environ.get("PROBE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/bench/probe/target/release/probe"))
N, C, mode, rounds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
specs = [s.split("|", 1) for s in sys.argv[5:]]
tick = os.sysconf("SC_CLK_TCK")
def stat(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return [int(x) / tick for x in f[11:15]]
res = {n: [] for n, _ in specs}
port = 4100
for r in range(rounds):
    for name, start in specs:
        port += 1
        cmd = start.replace("{port}", str(port))
        p = subprocess.Popen(cmd.split(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close(); break
            except OSError:
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        extra = ["--keepalive"] if mode == "ka" else []
        subprocess.run([PROBE, "spawn", base, "200", str(C)] + extra, capture_output=True, timeout=300)
        time.sleep(0.3)
        a = stat(p.pid); t0 = time.time()
        ru0 = os.times()
        out = subprocess.run([PROBE, "spawn", base, str(N), str(C)] + extra, capture_output=True, text=True, timeout=300).stdout
        ru1 = os.times()
        time.sleep(0.3)
        b = stat(p.pid)
        d = json.loads(out)
        rate = d.get("req_per_s")
        own = (b[0] + b[1] - a[0] - a[1]) / N * 1e6
        kids = (b[2] + b[3] - a[2] - a[3]) / N * 1e6
        probe = (ru1.children_user + ru1.children_system - ru0.children_user - ru0.children_system) / N * 1e6
        res[name].append((rate, own, kids, probe, d.get("errors", d.get("failed"))))
        os.killpg(p.pid, signal.SIGTERM); p.wait(timeout=10)
        print(f"round {r} {name:10} req/s {rate} server {own:.0f} us/req children {kids:.0f} probe {probe:.0f}", file=sys.stderr)
for name, v in res.items():
    med = lambda i: statistics.median(x[i] for x in v)
    print(f"{name:10} req/s median {med(0):.0f}  server {med(1):.0f} us/req  children {med(2):.0f} us/req  probe {med(3):.0f} us/req  ({len(v)} rounds)")
