#!/usr/bin/env python3
"""A reward server that misbehaves on purpose, for the client's tests. Standard library only.

Prints its URL on the first line. The path chooses the behaviour; the score of a sample is its first
coordinate (of the f32 encoding).
  /ok              correct answer, with a sub-score "twice"
  /slow            sleeps 5 s first
  /count           one score too few
  /nan             a NaN score (written as JSON's invalid NaN token)
  /inf             a score of 1e999 (infinite in any float)
  /badid           another request id
  /huge            announces a 100 MB body
  /huge-stream     streams 100 MB without a length
  /redirect-other  307 to the same port on another host (127.0.0.2)
  /redirect-same   307 to /ok on this host
  /flaky           500 on the first request, then correct answers
  /always500       500 every time
  /garbage         not HTTP at all
  /close           closes the connection without answering
  /auth            401 unless "Authorization: Bearer sesame"
"""
import base64
import json
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROTOCOL = "ramflow-reward/1"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = {}

    def reply(self, status, body, text=None, headers=()):
        data = text.encode() if text is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        path = self.path
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        shape = request["shape"]
        data = base64.b64decode(request["data"])
        values = struct.unpack(f"<{len(data) // 4}f", data)
        dim = len(values) // shape[0]
        scores = [values[i * dim] for i in range(shape[0])]
        good = {"protocol": PROTOCOL, "id": request["id"], "scores": scores, "terms": {"twice": [2 * s for s in scores]}}
        Handler.seen[path] = Handler.seen.get(path, 0) + 1
        if path == "/ok":
            self.reply(200, good)
        elif path == "/slow":
            time.sleep(5)
            self.reply(200, good)
        elif path == "/count":
            good["scores"] = scores[:-1]
            self.reply(200, good)
        elif path == "/nan":
            good["scores"][0] = float("nan")
            self.reply(200, None, text=json.dumps(good))
        elif path == "/inf":
            self.reply(200, None, text=json.dumps(good).replace(json.dumps(scores[0]), "1e999", 1))
        elif path == "/badid":
            good["id"] = "someone-else"
            self.reply(200, good)
        elif path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(100 << 20))
            self.end_headers()
            self.wfile.write(b"{" * 4096)
        elif path == "/huge-stream":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(100 << 4):
                    self.wfile.write(b" " * 65536)
            except OSError:
                pass
            self.close_connection = True
        elif path == "/redirect-other":
            port = self.server.server_address[1]
            self.reply(307, {}, headers=[("Location", f"http://127.0.0.2:{port}/ok")])
        elif path == "/redirect-same":
            self.reply(307, {}, headers=[("Location", "/ok")])
        elif path == "/flaky":
            if Handler.seen[path] == 1:
                self.reply(500, {"error": "warming up"})
            else:
                self.reply(200, good)
        elif path == "/always500":
            self.reply(500, {"error": "the judge crashed"})
        elif path == "/garbage":
            self.wfile.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            self.close_connection = True
        elif path == "/close":
            self.close_connection = True
        elif path == "/auth":
            if self.headers.get("Authorization") != "Bearer sesame":
                self.reply(401, {"error": "missing or wrong bearer token"})
            else:
                self.reply(200, good)
        else:
            self.reply(404, {"error": "no such path " + path})

    def log_message(self, fmt, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
