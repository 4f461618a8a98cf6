"""A fault-injecting HTTP proxy on 127.0.0.1, in front of an S3 server (moto's), for the fault
tests. Standard library only.

Usage: fault_proxy.py UPSTREAM_PORT
Prints its own port on the first line of stdout, then forwards every request to
127.0.0.1:UPSTREAM_PORT. It reads commands from stdin, one JSON object per line, answering each
with one JSON line on stdout; it exits when stdin closes (the test process that started it
exited), so no proxy outlives the tests.

Commands:
  {"rules": [RULE, ...]}   replace the fault rules (an empty list: no faults)
  {"stats": true}          how many requests were forwarded and how many faults of each kind
                           were injected

A RULE applies to requests whose "METHOD /path?query" contains "match" (default: every
request): the first "skip" of them pass, the next "count" (-1: all) get the fault; a rule also
ends "ttl" seconds after it was set (default 30), so every fault is bounded in time. Faults
("action"):
  status        answer "code" (500, 503, ...) without forwarding: the store refused
  after_status  forward, then answer "code" instead of the real answer: the store did the work
                but the answer was lost
  delay         wait "seconds", then forward: a slow store
  drop          close the connection without an answer, without forwarding
  after_drop    forward, then close the connection without an answer
  stop          close the connection and stop listening for "seconds" (connections refused),
                then listen again on the same port: the store stopped and came back
"""
import http.client
import json
import socket
import sys
import threading
import time

UPSTREAM = ("127.0.0.1", int(sys.argv[1]))
LOCK = threading.Lock()
RULES = []
STATS = {"forwarded": 0}
LISTEN = {"sock": None, "port": 0, "resume_at": 0.0}
CONNS = set()


def bump(key):
    with LOCK:
        STATS[key] = STATS.get(key, 0) + 1


def pick(line):
    """The fault for this request line, if a rule takes it."""
    now = time.monotonic()
    with LOCK:
        for rule in RULES:
            if now > rule["expires"] or rule["count"] == 0:
                continue
            if rule.get("match", "") not in line:
                continue
            if rule["skip"] > 0:
                rule["skip"] -= 1
                continue
            if rule["count"] > 0:
                rule["count"] -= 1
            return rule
    return None


def read_request(f):
    line = f.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = []
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, v = h.decode("latin-1").split(":", 1)
        headers.append((k.strip(), v.strip()))
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
    chunked = any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers)
    body = b""
    if chunked:
        parts = []
        while True:
            size = int(f.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            parts.append(f.read(size))
            f.readline()
        body = b"".join(parts)
        headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        headers.append(("Content-Length", str(len(body))))
    elif length:
        body = f.read(length)
    return method, target, headers, body


def forward(method, target, headers, body):
    conn = http.client.HTTPConnection(*UPSTREAM, timeout=60)
    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    for k, v in headers:
        if k.lower() != "connection":
            conn.putheader(k, v)
    conn.endheaders(body if body else None)
    resp = conn.getresponse()
    data = resp.read()
    out_headers = [
        (k, v)
        for k, v in resp.getheaders()
        if k.lower() not in ("transfer-encoding", "connection", "content-length")
    ]
    length = resp.getheader("Content-Length") if method == "HEAD" else str(len(data))
    if length is not None:
        out_headers.append(("Content-Length", length))
    conn.close()
    bump("forwarded")
    return resp.status, resp.reason, out_headers, (b"" if method == "HEAD" else data)


def send(sock, status, reason, headers, body):
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    sock.sendall(head.encode("latin-1") + b"\r\n" + body)


def error_answer(sock, code):
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>'
        + (b"SlowDown" if code == 503 else b"InternalError")
        + b"</Code><Message>injected fault</Message></Error>"
    )
    send(sock, code, "Injected", [("Content-Type", "application/xml"),
                                  ("Content-Length", str(len(body)))], body)


def stop_listening(seconds):
    with LOCK:
        LISTEN["resume_at"] = time.monotonic() + seconds
        sock = LISTEN["sock"]
        LISTEN["sock"] = None
        conns = list(CONNS)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
    for c in conns:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def handle(sock):
    with LOCK:
        CONNS.add(sock)
    f = sock.makefile("rb")
    try:
        while True:
            req = read_request(f)
            if req is None:
                return
            method, target, headers, body = req
            rule = pick(f"{method} {target}")
            action = rule["action"] if rule else None
            if action:
                bump(action)
            if action == "status":
                error_answer(sock, rule.get("code", 503))
                continue
            if action in ("drop", "stop"):
                if action == "stop":
                    stop_listening(rule.get("seconds", 2))
                return
            if action == "delay":
                time.sleep(rule.get("seconds", 1))
            answer = forward(method, target, headers, body)
            if action == "after_status":
                error_answer(sock, rule.get("code", 500))
                continue
            if action == "after_drop":
                return
            send(sock, *answer)
    except (OSError, ValueError):
        return
    finally:
        with LOCK:
            CONNS.discard(sock)
        try:
            sock.close()
        except OSError:
            pass


def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


def accept_loop():
    while True:
        with LOCK:
            sock = LISTEN["sock"]
            resume_at = LISTEN["resume_at"]
        if sock is None:
            time.sleep(max(0.0, min(0.05, resume_at - time.monotonic())))
            if time.monotonic() >= resume_at:
                while True:
                    try:
                        s = listen(LISTEN["port"])
                        break
                    except OSError:
                        time.sleep(0.05)
                with LOCK:
                    LISTEN["sock"] = s
            continue
        try:
            conn, _ = sock.accept()
        except OSError:
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def main():
    s = listen(0)
    LISTEN["sock"], LISTEN["port"] = s, s.getsockname()[1]
    threading.Thread(target=accept_loop, daemon=True).start()
    print(LISTEN["port"], flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if "rules" in cmd:
            now = time.monotonic()
            rules = []
            for r in cmd["rules"]:
                r = dict(r)
                r.setdefault("skip", 0)
                r.setdefault("count", -1)
                r["expires"] = now + r.get("ttl", 30)
                rules.append(r)
            with LOCK:
                RULES[:] = rules
            print(json.dumps({"ok": True}), flush=True)
        elif "stats" in cmd:
            with LOCK:
                print(json.dumps(STATS), flush=True)


if __name__ == "__main__":
    main()
