#!/usr/bin/env python3
"""A TCP proxy on loopback, for tests that kill "the server" mid-upload.

usage: tcp_proxy.py LISTEN_PORT TARGET_PORT

moto keeps its buckets only in memory, so killing moto itself would also lose the repository
a test wants to see survive; killing this proxy (kill -9) drops every connection at once, as
a crashed S3 front end would, while the objects behind it stay. Restart it on the same port to
bring "the server" back. Loopback only, and it stops when killed.
"""
import os
import socket
import sys
import threading
import time


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def watchdog(parent):
    # Never outlives the test that started it, nor ten minutes.
    deadline = time.time() + 600
    while os.getppid() == parent and time.time() < deadline:
        time.sleep(0.5)
    os._exit(0)


def main():
    listen, target = int(sys.argv[1]), int(sys.argv[2])
    threading.Thread(target=watchdog, args=(os.getppid(),), daemon=True).start()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen))
    server.listen(64)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", target))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
