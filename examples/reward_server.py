#!/usr/bin/env python3
"""A reward server for ramflow: protocol ramflow-reward/1 (docs/reward-protocol.md) over HTTP.

Python's standard library only; the classifier reward also needs PyTorch (Debian's python3-torch) and
python/ramflow_models.py from this repository. It prints the URL it serves on as its first line, then
one line per request on standard error.

  examples/reward_server.py --port 8000 --reward bump --center 4,0 --scale 2.5
  examples/reward_server.py --port 0 --reward classifier        # the shipped fashion judge
  ramflow finetune --reward remote --reward-url http://127.0.0.1:8000/ --out runs/remote

Rewards (the same scores as ramflow's built-in rewards of the same name):
  bump        h exp(-|x - c|^2 / (2 s^2))                       (--center, --scale, --height)
  classifier  log softmax(f(x))_c for the requested class c     (--checkpoint, --class)
Each response also carries named sub-scores ("terms"), logged by ramflow on their own: the bump's
squared distance to its centre, the classifier's accuracy on the batch.

--token-env NAME makes the server require "Authorization: Bearer $NAME"; --delay S makes each answer
take S seconds per sample longer (a stand-in for a large judge, for measuring how the trainer hides
its time behind the rollout).
"""
import argparse
import base64
import json
import math
import os
import struct
import sys
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROTOCOL = "ramflow-reward/1"
MAX_REQUEST = 256 << 20


def decode_png(data):
    """8-bit grey or RGB PNG (any filter, no interlace) -> (height, width, channels, bytes row-major)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (0, 2) or interlace:
        raise ValueError("only 8-bit grey or RGB PNGs without interlace")
    channels = 1 if colour == 0 else 3
    raw, stride = zlib.decompress(idat), width * channels
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + a) & 255
            elif kind == 2:
                row[i] = (row[i] + b) & 255
            elif kind == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += row
        prev = row
    return height, width, channels, bytes(out)


def batch_of(request):
    """The request's samples as (shape, flat list of floats): f32 data, or PNG images mapped to [-1, 1]."""
    shape = request["shape"]
    if not isinstance(shape, list) or not shape or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError("bad shape")
    count = math.prod(shape)
    if request.get("encoding", "f32") == "f32":
        data = base64.b64decode(request["data"], validate=True)
        if len(data) != 4 * count:
            raise ValueError(f"data has {len(data)} bytes for shape {shape}")
        return shape, list(struct.unpack(f"<{count}f", data))
    values = []
    for image in request["images"]:
        height, width, channels, pixels = decode_png(base64.b64decode(image, validate=True))
        # [H, W, C] bytes -> [C, H, W] in [-1, 1]
        for ch in range(channels):
            values += [pixels[i] / 127.5 - 1.0 for i in range(ch, len(pixels), channels)]
    if len(values) != count:
        raise ValueError(f"the images hold {len(values)} values for shape {shape}")
    return shape, values


class Bump:
    def __init__(self, args):
        self.center = [float(v) for v in args.center.split(",")]
        self.scale, self.height = args.scale, args.height

    def score(self, shape, values, conditions):
        dim = len(values) // shape[0] if shape[0] else 0
        if dim != len(self.center):
            raise ValueError(f"samples of dimension {dim}, the bump's centre has {len(self.center)}")
        scores, d2s = [], []
        for i in range(shape[0]):
            d2 = sum((values[i * dim + k] - self.center[k]) ** 2 for k in range(dim))
            scores.append(self.height * math.exp(-0.5 * d2 / (self.scale * self.scale)))
            d2s.append(d2)
        return scores, {"squared_distance": d2s}


class Classifier:
    def __init__(self, args):
        import torch  # Debian's python3-torch
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "..", "python"))
        import ramflow_models
        path = args.checkpoint or os.path.join(here, "..", "models", "fashion_classifier.safetensors")
        self.torch, self.model, self.fixed = torch, ramflow_models.load_classifier(path).eval(), args.klass

    def score(self, shape, values, conditions):
        torch = self.torch
        x = torch.tensor(values, dtype=torch.float32).view(shape)
        if self.fixed is not None:
            c = torch.full((shape[0],), self.fixed, dtype=torch.long)
        elif conditions is None:
            raise ValueError("the classifier scores the requested class: the samples have no conditions")
        else:
            c = torch.tensor(conditions, dtype=torch.long)
        with torch.no_grad():
            logp = torch.log_softmax(self.model(x), dim=1)
        scores = logp.gather(1, c.view(-1, 1)).view(-1)
        hit = (logp.argmax(1) == c).float()
        return scores.double().tolist(), {"accuracy": hit.double().tolist()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        token = self.server.token
        if token is not None and self.headers.get("Authorization") != "Bearer " + token:
            return self.reply(401, {"error": "missing or wrong bearer token"})
        length = int(self.headers.get("Content-Length", "0"))
        if length <= 0 or length > MAX_REQUEST:
            return self.reply(413, {"error": f"request body of {length} bytes"})
        try:
            request = json.loads(self.rfile.read(length))
            if request.get("protocol") != PROTOCOL:
                return self.reply(400, {"error": f"protocol {request.get('protocol')!r}, this server speaks {PROTOCOL}"})
            shape, values = batch_of(request)
            if self.server.delay > 0:
                time.sleep(self.server.delay * shape[0])
            scores, terms = self.server.reward.score(shape, values, request.get("conditions"))
        except (ValueError, KeyError, TypeError) as e:
            return self.reply(400, {"error": str(e)})
        self.reply(200, {"protocol": PROTOCOL, "id": request.get("id"), "scores": scores, "terms": terms})

    def log_message(self, fmt, *args):
        sys.stderr.write("reward_server: " + fmt % args + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--reward", choices=["bump", "classifier"], default="bump")
    parser.add_argument("--center", default="4,0", help="bump: centre c")
    parser.add_argument("--scale", type=float, default=2.5, help="bump: width s")
    parser.add_argument("--height", type=float, default=1.0, help="bump: height h")
    parser.add_argument("--checkpoint", help="classifier: the judge (default: the shipped fashion classifier)")
    parser.add_argument("--class", dest="klass", type=int, help="classifier: one class for every sample")
    parser.add_argument("--token-env", help="require the bearer token in this environment variable")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to every answer, per sample")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.reward = Bump(args) if args.reward == "bump" else Classifier(args)
    server.token, server.delay = None, args.delay
    if args.token_env:
        server.token = os.environ.get(args.token_env)
        if not server.token:
            parser.error(f"--token-env {args.token_env}: the variable is not set")
    print(f"http://{args.host}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
