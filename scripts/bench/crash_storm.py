"""kill -9 during a storm long enough for several WAL rewinds: every alert
answered 200 must be in the database after a restart.

    python3 scripts/bench/crash_storm.py [BIN_DIR [SECONDS]]

BIN_DIR holds the alertrelay binary (default target/release); SECONDS of
storm before the kill (default 30). wrk drives the bulk of the storm (its
answers are not tracked); eight client threads post alerts of their own
and remember every one answered 200. Exits 1 if any of those is missing.
A soak check run by hand (docs/BENCHMARKS.md), not part of the tests."""
import json, os, shutil, signal, socket, sqlite3, subprocess, sys, tempfile, threading, time, urllib.request
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
B = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release")
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 30
_s = socket.socket(); _s.bind(("127.0.0.1", 0)); PORT = _s.getsockname()[1]; _s.close()
w = tempfile.mkdtemp(prefix="crash.")
open(f"{w}/relay.yml", "w").write(f'listen: 127.0.0.1:{PORT}\nstorage: "sqlite://{w}/relay.db"\n')
def start():
    p = subprocess.Popen([f"{B}/alertrelay", "serve", "-c", f"{w}/relay.yml", "-l", f"{w}/relay.log"], cwd=w,
                         env=dict(os.environ, RUST_LOG="warn,alertrelay::store=debug"))
    for _ in range(100):
        try: urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz"); return p
        except Exception: time.sleep(0.1)
    raise SystemExit("not up")
p = start()
wrk = subprocess.Popen(["wrk", "-t2", "-c24", "-d60s", "-s", f"{ROOT}/scripts/bench/new_alerts.lua",
                        f"http://127.0.0.1:{PORT}/webhook/alertmanager"], stdout=subprocess.DEVNULL)
acked = []; lock = threading.Lock(); stop = False
def client(t):
    n = 0
    while not stop:
        n += 1
        names = [f"crash-t{t}-n{n}-{i}" for i in range(10)]
        body = {"version": "4", "groupKey": "{}", "status": "firing", "receiver": "r", "groupLabels": {},
                "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
                "alerts": [{"status": "firing", "labels": {"alertname": "Crash", "instance": x},
                            "annotations": {}, "startsAt": "2026-12-02T10:00:00Z",
                            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": ""} for x in names]}
        req = urllib.request.Request(f"http://127.0.0.1:{PORT}/webhook/alertmanager", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        try:
            if urllib.request.urlopen(req, timeout=10).status == 200:
                with lock: acked.extend(names)
        except Exception: pass
ts = [threading.Thread(target=client, args=(t,)) for t in range(8)]
[t.start() for t in ts]
time.sleep(SECONDS)
p.send_signal(signal.SIGKILL); p.wait(); stop = True
[t.join() for t in ts]; wrk.kill()
rewinds = open(f"{w}/relay.log").read().count("writer-side checkpoint")
wal = os.path.getsize(f"{w}/relay.db-wal")
p = start(); p.send_signal(signal.SIGTERM); p.wait()
db = sqlite3.connect(f"{w}/relay.db")
have = {r[0] for r in db.execute("select json_extract(labels,'$.instance') from alerts where json_extract(labels,'$.alertname')='Crash'")}
total = db.execute("select count(*) from alerts").fetchone()[0]
missing = [a for a in acked if a not in have]
shutil.rmtree(w)
print(f"acked {len(acked)} tracked alerts, stored alerts {total}, WAL at kill {wal>>20} MiB, rewinds before kill {rewinds}, missing {len(missing)}")
sys.exit(1 if missing else 0)
