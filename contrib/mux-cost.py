# Server CPU: one /jobs/events?ids=(64 jobs) stream vs 64 /jobs/ID/events streams
# of the same 64 jobs, each printing 10 lines/s. utime+stime of the server from
# /proc/PID/stat over 10 s, alternating, 3 rounds each; medians.
import json, os, select, socket, subprocess, sys, time, statistics, urllib.request
BIN = sys.argv[1]
srv = subprocess.Popen([BIN, "--no-auth", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
url = srv.stdout.readline().decode().split("on ")[1].strip()
host, port = url.split("//")[1].rstrip("/").split(":")
port = int(port)
def post(cmd):
    req = urllib.request.Request(url + "jobs?command=" + urllib.parse.quote(cmd), method="POST")
    return json.load(urllib.request.urlopen(req))["id"]
import urllib.parse
ids = [post("sh -c 'while :; do echo line-of-output-%d; sleep 0.1; done'" % i) for i in range(64)]
def cpu():
    f = open("/proc/%d/stat" % srv.pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
def open_stream(target):
    s = socket.create_connection((host, port))
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % target).encode())
    s.setblocking(False)
    return s
def measure(targets, secs=10.0):
    socks = [open_stream(t) for t in targets]
    got = 0
    def pump(until):
        nonlocal got
        while time.time() < until:
            r, _, _ = select.select(socks, [], [], 0.2)
            for s in r:
                try:
                    got += len(s.recv(65536))
                except BlockingIOError:
                    pass
    pump(time.time() + 1.5)  # settle: backlog of held events sent
    got = 0
    c0 = cpu(); pump(time.time() + secs); c1 = cpu()
    for s in socks: s.close()
    time.sleep(0.5)
    return (c1 - c0) / os.sysconf("SC_CLK_TCK"), got
mux, sep = [], []
for round in range(3):
    m = measure(["/jobs/events?ids=" + ",".join(ids)])
    s = measure(["/jobs/%s/events" % i for i in ids])
    mux.append(m); sep.append(s)
    print("round %d: one mux stream %.2f s CPU (%d B read); 64 job streams %.2f s CPU (%d B read)" % (round, m[0], m[1], s[0], s[1]), flush=True)
print("median server CPU over 10 s: one multiplexed stream %.2f s, 64 streams %.2f s, ratio %.2f" % (
    statistics.median(x[0] for x in mux), statistics.median(x[0] for x in sep),
    statistics.median(x[0] for x in mux) / max(statistics.median(x[0] for x in sep), 1e-9)))
srv.terminate(); srv.wait(5)
