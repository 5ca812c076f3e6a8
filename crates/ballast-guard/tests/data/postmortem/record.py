#!/usr/bin/env python3
"""Records the event logs the postmortem golden tests read, for real: three HTTP backends on
loopback, `ballast serve` (its own guard) or HAProxy under `ballast watch --event-log`,
bounded client traffic, and a configuration fault made live by a reload, then undone.

    python3 record.py serve-weights  BALLAST_BIN OUT.jsonl
    python3 record.py haproxy-weights BALLAST_BIN OUT.jsonl
    python3 record.py serve-limit    BALLAST_BIN OUT.jsonl

Each run takes about two minutes; everything it starts runs in its own process group and is
stopped at the end. Traffic goes to 127.0.0.1 only.
"""

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend(name, delay):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if delay:
                time.sleep(delay)
            body = (name + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Traffic:
    """`clients` threads, each one request after another with `gap` seconds between."""

    def __init__(self, port, clients, gap):
        self.stop = False
        self.codes = {}
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.run, args=(port, gap), daemon=True)
            for _ in range(clients)
        ]
        for t in self.threads:
            t.start()

    def run(self, port, gap):
        while not self.stop:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    code = r.status
            except urllib.error.HTTPError as e:
                code = e.code
            except Exception:
                code = 0
            with self.lock:
                self.codes[code] = self.codes.get(code, 0) + 1
            time.sleep(gap)

    def end(self):
        self.stop = True
        for t in self.threads:
            t.join(timeout=10)
        return self.codes


def spawn(args, out):
    return subprocess.Popen(
        args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def serve_text(admin, listen, event_log, backends, weights, extra=""):
    servers = "".join(
        f'[[pools.app.servers]]\nname = "app-{i + 1}"\naddress = "127.0.0.1:{b.server_port}"\n'
        f"weight = {w}\n{extra}\n"
        for i, (b, w) in enumerate(zip(backends, weights))
    )
    return (
        f'[global]\nevent_log = "{event_log}"\n\n[admin]\naddress = "127.0.0.1:{admin}"\n\n'
        f'[listeners.web]\naddress = "127.0.0.1:{listen}"\npool = "app"\n\n'
        f'[pools.app]\nalgorithm = "round-robin"\nretries = {{ attempts = 0 }}\n{servers}'
    )


def record_serve(binary, out, scenario):
    work = tempfile.mkdtemp()
    try:
        delay = 0.05
        backends = [backend(f"app-{i}", delay) for i in range(1, 4)]
        admin, listen = free_port(), free_port()
        events = os.path.join(work, "events.jsonl")
        config = os.path.join(work, "ballast.toml")
        limit = "max_connections = 3\nmax_queue = 0"
        good = serve_text(admin, listen, events, backends, [1, 1, 1], limit)
        if scenario == "serve-weights":
            bad = serve_text(admin, listen, events, backends, [1, 1, 8], limit)
        else:
            bad = serve_text(
                admin, listen, events, backends, [1, 1, 1], "max_connections = 1\nmax_queue = 0"
            )
        with open(config, "w") as f:
            f.write(good)
        log = open(os.path.join(work, "serve.out"), "w")
        p = spawn([binary, "serve", "--threads", "1", "-c", config], log)
        try:
            wait_port(admin)
            wait_port(listen)
            traffic = Traffic(listen, 6, 0.02)
            time.sleep(35)
            with open(config, "w") as f:
                f.write(bad)
            os.kill(p.pid, signal.SIGHUP)
            time.sleep(30)
            with open(config, "w") as f:
                f.write(good)
            os.kill(p.pid, signal.SIGHUP)
            time.sleep(40)
            codes = traffic.end()
            print("responses:", codes, file=sys.stderr)
        finally:
            stop(p)
        shutil.copy(events, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def haproxy_text(sock, front, backends, weights):
    servers = "".join(
        f"    server app-{i + 1} 127.0.0.1:{b.server_port} weight {w} maxconn 3 check\n"
        for i, (b, w) in enumerate(zip(backends, weights))
    )
    return (
        f"global\n    stats socket {sock} mode 600 level admin\n    maxconn 500\n"
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n"
        "    timeout server 10s\n    timeout queue 1s\n"
        f"frontend web\n    bind 127.0.0.1:{front}\n    default_backend app\n"
        f"backend app\n    balance roundrobin\n{servers}"
    )


def record_haproxy(binary, out):
    work = tempfile.mkdtemp()
    try:
        backends = [backend(f"app-{i}", 0.05) for i in range(1, 4)]
        sock = os.path.join(work, "admin.sock")
        config = os.path.join(work, "haproxy.cfg")
        events = os.path.join(work, "events.jsonl")
        front = free_port()

        def write(weights):
            aside = config + ".new"
            with open(aside, "w") as f:
                f.write(haproxy_text(sock, front, backends, weights))
            os.rename(aside, config)

        write([1, 1, 1])
        log = open(os.path.join(work, "haproxy.out"), "w")
        procs = [spawn(["haproxy", "-db", "-f", config], log)]
        watch = None
        try:
            wait_port(front)
            time.sleep(0.5)
            watch = spawn(
                [binary, "watch", f"haproxy:{sock}", "--config", config,
                 "--event-log", events, "--format", "json"],
                open(os.path.join(work, "watch.out"), "w"),
            )
            traffic = Traffic(front, 4, 0.02)
            time.sleep(35)
            write([1, 1, 8])
            time.sleep(3)
            procs.append(spawn(["haproxy", "-db", "-f", config, "-sf", str(procs[-1].pid)], log))
            time.sleep(30)
            write([1, 1, 1])
            time.sleep(2)
            procs.append(spawn(["haproxy", "-db", "-f", config, "-sf", str(procs[-1].pid)], log))
            time.sleep(40)
            codes = traffic.end()
            print("responses:", codes, file=sys.stderr)
        finally:
            if watch:
                stop(watch)
            for p in procs:
                stop(p)
        shutil.copy(events, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    scenario, binary, out = sys.argv[1:4]
    if scenario in ("serve-weights", "serve-limit"):
        record_serve(binary, out, scenario)
    elif scenario == "haproxy-weights":
        record_haproxy(binary, out)
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main()
