#!/usr/bin/env python3
"""An HTTP proxy on loopback that answers like an S3-compatible service without flexible
checksums (Backblaze B2's S3 API): any request carrying `x-amz-checksum-*` or
`x-amz-sdk-checksum-algorithm` gets 400 InvalidArgument "Unsupported header '…' received for
this API call."; every other request goes to the S3 server unchanged (the Host header too, so
the signature still verifies there).

usage: no_checksum_proxy.py LISTEN_PORT TARGET_PORT    (LISTEN_PORT 0: any free port)

Prints "ready PORT" once it listens, then one line "refused HEADER" per refusal. Loopback only.
"""
import http.client
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = int(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        refused = [h for h in self.headers if h.lower().startswith("x-amz-checksum-") or h.lower() == "x-amz-sdk-checksum-algorithm"]
        if refused:
            header = refused[0].lower()
            reply = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidArgument</Code>"
                     f"<Message>Unsupported header '{header}' received for this API call.</Message></Error>").encode()
            print("refused " + header, flush=True)
            self.send_response(400)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return
        conn = http.client.HTTPConnection("127.0.0.1", TARGET, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
        conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        # A HEAD's Content-Length is the object's size, with no body after it.
        self.send_header("Content-Length", r.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print(f"ready {server.server_address[1]}", flush=True)
server.serve_forever()
