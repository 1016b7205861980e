"""Scripted upstream for bench/shapes.sh: answers each request with the bytes its path names
(the same table as tests/conformance/shapes.rs) and logs what it received, one line a request.
Loopback only; stops when its parent script kills it."""
import socket
import sys
import threading

ANSWERS = {
    "odd-reason": (b"HTTP/1.1 599 Odd\r\ncontent-length: 2\r\n\r\nok", False),
    "both-framings": (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n0\r\n\r\n", True),
    "repeated-length": (b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello", False),
    "http10": (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", True),
    "unasked-101": (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: foo\r\nconnection: upgrade\r\n\r\n", True),
    "bad-length": (b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n", True),
    "huge-head": (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
                  + b"".join(b"x-big-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
                  + b"\r\nok", True),
}
OK = (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", False)


def serve(conn, log):
    try:
        answer_all(conn, log)
    except OSError:
        pass  # a proxy that resets the connection is one of the shapes


def answer_all(conn, log):
    buf = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
            length = next((int(v) for k, v in headers if k.lower() == "content-length" and v.isdigit()), 0)
            chunked = any(k.lower() == "transfer-encoding" for k, _ in headers)
            if chunked:
                while not buf.endswith(b"0\r\n\r\n"):
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = b""
            else:
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
            log.write("%s | %s\n" % (lines[0], "; ".join("%s: %s" % h for h in headers)))
            log.flush()
            name = lines[0].split(" ")[1].rsplit("/", 1)[-1] if " " in lines[0] else ""
            answer, close = ANSWERS.get(name, OK)
            conn.sendall(answer)
            if close:
                return


def main():
    port, log_path = int(sys.argv[1]), sys.argv[2]
    log = open(log_path, "a")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn, log), daemon=True).start()


main()
