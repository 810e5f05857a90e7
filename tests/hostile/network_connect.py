# Connects to a server listening on the host's loopback; it passes only if it gets through.
import socket


def f(x):
    with open("/tmp/localdistill-hostile/port.txt") as port_file:
        port = int(port_file.read())
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(b"exfiltrated")
    return x
