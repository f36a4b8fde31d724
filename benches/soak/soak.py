#!/usr/bin/env python3
"""Soak test: mixed traffic against a real `postern serve` for a long time, watching errors and memory.

    benches/soak/run.sh [--minutes 30] [--rate 40]

Starts `postern demo` only for its development OpenID provider and echo upstream, then `postern serve` on a
config of its own (sessions refreshed 30 s after sign-in, so refreshes happen all the time). Traffic, at a
moderate rate: sign-ins of alice, bob and carol, each then browsing `/` and `/admin` (expected 200/200,
200/403, 403/403); long-lived sessions that keep being used (and refreshed); sign-outs, after which the old
cookie must be refused; bearer calls with client-credentials tokens; a policy reload every 20 s, alternately
by editing a file (watcher) and by SIGHUP; every 15 s a revocation: erin signs in, then `postern sessions
revoke --user` (the admin CLI, on the same store file while the server runs) ends her sessions, and her
cookie must be refused within two seconds. Every answer is checked against what it must be; anything else is
an error. Every 30 s it prints the requests, errors and the serve process's RSS; at the end a summary, and it
exits 1 on any error or when RSS grew by more than 20 % after the first five minutes.

Loopback only. Standard library only.
"""

import argparse
import base64
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

DEMO_CLIENT_ID = "postern-demo"
DEMO_CLIENT_SECRET = "demo-secret-not-for-production"
POLICY = """
[groups]
eng = "5b1c3d2e-0000-0000-0000-000000000001"
admins = "9e2a4f6b-0000-0000-0000-000000000002"

[[route]]
name = "soak"
host = "*"
upstream = "{echo}"
allow = [{{ groups = ["eng"] }}, {{ roles = ["Deploy.Write"] }}]

[[route]]
name = "soak-admin"
host = "*"
path = "/admin"
upstream = "{echo}"
allow = [{{ groups = ["admins"] }}]
# reload {generation}
"""
EXPECTED = {"alice": (200, 200), "bob": (200, 403), "carol": (403, 403)}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = []

    def ok(self, kind):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def error(self, kind, message):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.errors.append(f"{time.strftime('%H:%M:%S')} {kind}: {message}")

    def snapshot(self):
        with self.lock:
            return dict(self.counts), len(self.errors)


def request(base, method, path, headers=None, body=None):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, r.getheaders(), data
    finally:
        conn.close()


def header(headers, name):
    return next((v for k, v in headers if k.lower() == name), None)


def set_cookies(headers, jar):
    for k, v in headers:
        if k.lower() == "set-cookie":
            pair = v.split(";", 1)[0]
            name, _, value = pair.partition("=")
            if "Max-Age=0" in v or value == "":
                jar.pop(name, None)
            else:
                jar[name] = value


def cookie_header(jar):
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def sign_in(postern, user):
    """The browser flow; returns the cookie jar holding the session."""
    jar = {}
    status, h, _ = request(postern, "GET", "/oauth2/start?rd=/", {"Accept": "text/html"})
    assert status == 302, f"start: {status}"
    set_cookies(h, jar)
    authorize = urllib.parse.urlsplit(header(h, "location"))
    provider = f"{authorize.scheme}://{authorize.netloc}"
    status, h, _ = request(provider, "GET", f"{authorize.path}?{authorize.query}&login_hint={user}", {"Accept": "text/html"})
    assert status == 302, f"authorize: {status}"
    callback = urllib.parse.urlsplit(header(h, "location"))
    status, h, _ = request(postern, "GET", f"{callback.path}?{callback.query}", {"Accept": "text/html", "Cookie": cookie_header(jar)})
    assert status == 302, f"callback: {status}"
    set_cookies(h, jar)
    assert "postern" in jar, f"no session cookie: {jar.keys()}"
    return jar


def browse(postern, jar, path):
    status, h, _ = request(postern, "GET", path, {"Accept": "application/json", "Cookie": cookie_header(jar)})
    set_cookies(h, jar)
    return status


def client_credentials(issuer):
    basic = base64.b64encode(f"{DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET}".encode()).decode()
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "api://postern/.default"})
    status, _, data = request(issuer, "POST", "/token", {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"}, body)
    assert status == 200, f"token: {status}"
    return json.loads(data)["access_token"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--postern", required=True, help="the postern binary")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=40, help="requests per second, roughly")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="postern-soak-")
    procs = []
    stop = threading.Event()
    stats = Stats()
    try:
        demo = subprocess.Popen([args.postern, "demo", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(demo)
        issuer = echo = None
        while issuer is None or echo is None:
            line = demo.stdout.readline()
            if not line:
                sys.exit("postern demo exited")
            if "Development OpenID provider" in line:
                issuer = line.rsplit(" ", 1)[1].strip()
            if "Echo upstream:" in line:
                echo = line.rsplit(" ", 1)[1].strip()
        threading.Thread(target=lambda: [None for _ in demo.stdout], daemon=True).start()

        import socket

        def free_port():
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
            s.close()
            return p

        port, admin_port = free_port(), free_port()
        postern = f"http://127.0.0.1:{port}"
        os.makedirs(f"{work}/policies")
        with open(f"{work}/client_secret", "w") as f:
            f.write(DEMO_CLIENT_SECRET)
        with open(f"{work}/session.key", "w") as f:
            f.write("soak test session key, not a secret, long enough\n")
        generation = [0]

        def write_policy():
            generation[0] += 1
            tmp = f"{work}/policies/.soak.toml.tmp"
            with open(tmp, "w") as f:
                f.write(POLICY.format(echo=echo, generation=generation[0]))
            os.replace(tmp, f"{work}/policies/soak.toml")

        write_policy()
        with open(f"{work}/postern.toml", "w") as f:
            f.write(f"""[server]
public_url = "{postern}"
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin_port}"

[oidc]
issuer = "{issuer}"
client_id = "{DEMO_CLIENT_ID}"
client_secret = {{ file = "client_secret" }}

[session]
secret = {{ file = "session.key" }}
refresh_before = "59m30s"
# Sessions the traffic abandons (half the sign-ins never sign out) end after two idle minutes, so the
# number of live sessions levels off and memory growth would mean a leak.
idle_timeout = "2m"

[bearer]
audiences = ["api://postern"]
""")
        serve = subprocess.Popen([args.postern, "serve", "--config", f"{work}/postern.toml"], stdout=subprocess.DEVNULL, stderr=open(f"{work}/serve.log", "w"), env={**os.environ, "POSTERN_LOG": "warn"})
        procs.append(serve)
        deadline = time.time() + 30
        while True:
            try:
                request(postern, "GET", "/oauth2/userinfo")
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("postern serve did not start")
                time.sleep(0.1)

        # Workers share the rate: sign-ins + browsing, long-lived sessions, bearer calls.
        pause = 1.0 / max(args.rate, 1.0)

        def sign_in_worker():
            while not stop.is_set():
                who = random.choice(list(EXPECTED))
                try:
                    jar = sign_in(postern, who)
                    stats.ok("sign-in")
                except Exception as e:  # noqa: BLE001
                    stats.error("sign-in", f"{who}: {e}")
                    continue
                for _ in range(5):
                    for path, want in zip(("/", "/admin/x"), EXPECTED[who]):
                        got = browse(postern, jar, path)
                        (stats.ok if got == want else lambda k: stats.error(k, f"{who} {path}: {got}, expected {want}"))("browse")
                        time.sleep(pause * 4)
                if random.random() < 0.5:
                    old = dict(jar)
                    status, h, _ = request(postern, "GET", "/oauth2/sign_out", {"Accept": "text/html", "Cookie": cookie_header(jar)})
                    got = browse(postern, old, "/")
                    if status in (302, 303) and got == 401:
                        stats.ok("sign-out")
                    else:
                        stats.error("sign-out", f"sign-out {status}, then the old cookie got {got}")

        def long_session_worker():
            jar = sign_in(postern, "alice")
            while not stop.is_set():
                got = browse(postern, jar, "/")
                (stats.ok if got == 200 else lambda k: stats.error(k, f"alice's long session: {got}"))("long-session")
                time.sleep(pause * 4)

        def bearer_worker():
            token, fetched = None, 0
            while not stop.is_set():
                try:
                    if token is None or time.time() - fetched > 60:
                        token, fetched = client_credentials(issuer), time.time()
                    got, _, _ = request(postern, "GET", "/deploy", {"Authorization": f"Bearer {token}"})
                    (stats.ok if got == 200 else lambda k: stats.error(k, f"{got}"))("bearer")
                except Exception as e:  # noqa: BLE001
                    stats.error("bearer", str(e))
                time.sleep(pause * 2)

        def revocation_worker():
            erin = "e1b5c3d7-2a4f-4b8e-9c60-7d1e3f5a9b22"
            while not stop.wait(15):
                try:
                    jar = sign_in(postern, "erin")
                    got = browse(postern, jar, "/")
                    if got != 200:
                        stats.error("revocation", f"erin before revocation: {got}")
                        continue
                    revoked_at = time.time()
                    cli = subprocess.run([args.postern, "sessions", "revoke", "--user", erin, "--config", f"{work}/postern.toml"], capture_output=True, text=True, env={**os.environ, "POSTERN_LOG": "warn"})
                    if cli.returncode != 0:
                        stats.error("revocation", f"postern sessions revoke: {cli.returncode} {cli.stderr.strip()[:200]}")
                        continue
                    while (got := browse(postern, jar, "/")) != 401 and time.time() - revoked_at < 2:
                        time.sleep(0.05)
                    (stats.ok if got == 401 else lambda k: stats.error(k, f"erin's revoked session still got {got}"))("revocation")
                except Exception as e:  # noqa: BLE001
                    stats.error("revocation", str(e))

        def reload_worker():
            n = 0
            while not stop.wait(20):
                n += 1
                if n % 2:
                    write_policy()
                else:
                    serve.send_signal(signal.SIGHUP)
                stats.ok("reload")

        threads = [threading.Thread(target=t, daemon=True) for t in (sign_in_worker, sign_in_worker, long_session_worker, bearer_worker, bearer_worker, reload_worker, revocation_worker)]
        for t in threads:
            t.start()

        started = time.time()
        end = started + args.minutes * 60
        samples = []
        print(f"{'minute':>6} {'requests':>9} {'errors':>6} {'rss MiB':>8}  by kind")
        while time.time() < end:
            time.sleep(min(30, max(0, end - time.time())))
            counts, errors = stats.snapshot()
            rss = rss_kib(serve.pid) / 1024
            samples.append((time.time() - started, rss))
            kinds = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            print(f"{(time.time() - started) / 60:6.1f} {sum(counts.values()):9d} {errors:6d} {rss:8.1f}  {kinds}", flush=True)
            if serve.poll() is not None:
                stats.error("serve", f"postern serve exited with {serve.returncode}")
                break
        stop.set()
        for t in threads:
            t.join(timeout=15)

        counts, errors = stats.snapshot()
        settled = [r for t, r in samples if t >= 300] or [r for _, r in samples]
        growth = (settled[-1] / settled[0] - 1) * 100 if settled and settled[0] else 0.0
        print()
        print(f"requests: {sum(counts.values())}, errors: {errors}, RSS {settled[0]:.1f} -> {settled[-1]:.1f} MiB after the first five minutes ({growth:+.1f} %), max {max(r for _, r in samples):.1f} MiB")
        _, _, metrics = request(f"http://127.0.0.1:{admin_port}", "GET", "/metrics")
        for line in metrics.decode().splitlines():
            if line.startswith(("postern_session_refreshes_total", "postern_sign_ins_total", "postern_bearer_cache_hits_total")):
                print("  " + line)
        for e in stats.errors[:20]:
            print("  " + e)
        sys.exit(1 if errors or growth > 20 else 0)
    finally:
        stop.set()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
