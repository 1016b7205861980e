"""Sends each shape of bench/shapes.sh to one proxy and prints what came back: the first
answer's status line and x-cutover-error, whether the connection closed, and what the upstream
log gained. Loopback only; every read is bounded."""
import re
import socket
import sys
import time

HOST = b"host: shapes.test\r\n"
REQUESTS = [
    ("two Host headers", b"GET /answer/ok HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\n\r\n"),
    ("no Host on HTTP/1.1", b"GET /answer/ok HTTP/1.1\r\nx-a: 1\r\n\r\n"),
    ("Host with a space", b"GET /answer/ok HTTP/1.1\r\nhost: a b.test\r\n\r\n"),
    ("authority-form target", b"GET shapes.test:80 HTTP/1.1\r\n" + HOST + b"\r\n"),
    ("absolute-form, other Host", b"GET http://target.test/answer/ok HTTP/1.1\r\nhost: other.test\r\n\r\n"),
    ("Connection: host, x-forwarded-for", b"GET /answer/ok HTTP/1.1\r\n" + HOST
     + b"connection: host, x-forwarded-for\r\nx-forwarded-for: 6.6.6.6\r\n\r\n"),
    ("GET, then the HTTP/2 preface", b"GET /answer/ok HTTP/1.1\r\n" + HOST + b"\r\n"
     + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("upgrade with a body", b"GET /answer/ok HTTP/1.1\r\n" + HOST
     + b"connection: upgrade\r\nupgrade: foo\r\ncontent-length: 5\r\n\r\nhello"),
]
for name in ["odd-reason", "both-framings", "repeated-length", "http10", "unasked-101",
             "bad-length", "huge-head"]:
    REQUESTS.append(("env answer: " + name,
                     b"POST /answer/" + name.encode() + b" HTTP/1.1\r\n" + HOST
                     + b"content-length: 5\r\n\r\nhello"))


def exchange(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(data)
    got, closed = b"", False
    deadline = time.time() + 2
    while time.time() < deadline:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True
            break
        if not d:
            closed = True
            break
        got += d
    s.close()
    return got, closed


def summary(got):
    """Each answer's status line (with x-cutover-error): a version and three digits."""
    answers = []
    starts = [m.start() for m in re.finditer(rb"HTTP/1\.[01] \d\d\d ", got)]
    for i, at in enumerate(starts):
        block = got[at:starts[i + 1] if i + 1 < len(starts) else len(got)]
        line = block.split(b"\r\n", 1)[0].decode("latin-1")
        err = ""
        for l in block.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
            if l.lower().startswith(b"x-cutover-error:"):
                err = " [" + l.split(b":", 1)[1].strip().decode() + "]"
        answers.append(line + err)
    return " ; ".join(answers) or "(no answer)"


def host_of(line):
    for h in line.split(" | ", 1)[-1].split("; "):
        if h.lower().startswith("host: "):
            return " host=" + h[6:]
    return ""


def main():
    port, log_path = int(sys.argv[1]), sys.argv[2]
    for name, data in REQUESTS:
        before = open(log_path).read().count("\n")
        got, closed = exchange(port, data)
        time.sleep(0.2)
        after = open(log_path).read().splitlines()[before:]
        env = " / ".join(l.split(" | ")[0] + host_of(l) for l in after) or "-"
        print("%s\t%s%s\t%s" % (name, summary(got), ", closed" if closed else "", env))


main()
