#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (standard library only): small valid inputs of each format and a
few near-misses, one file each, under fuzz/corpus/<target>/. Run from anywhere; rewrites the files."""
import gzip
import json
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    os.makedirs(os.path.join(here, target), exist_ok=True)
    with open(os.path.join(here, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + blob


put("safetensors", "empty", safetensors({}))
put("safetensors", "one_f32", safetensors({"w": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))}))
put("safetensors", "mixed", safetensors({"a": ("F64", [1], struct.pack("<d", 0.5)), "b": ("U8", [3], b"abc"),
                                         "c": ("I64", [], struct.pack("<q", 7)), "d": ("BOOL", [0], b"")},
                                        {"ramflow": json.dumps({"format": 1, "models": {}})}))
put("safetensors", "bf16", safetensors({"h": ("BF16", [2], b"\x80\x3f\x00\x40"), "f": ("F16", [1], b"\x00\x3c")}))
put("safetensors", "bad_offsets", safetensors({"w": ("F32", [2], struct.pack("<2f", 1, 2))})[:-4])


def idx(type_code, shape, payload):
    return b"\x00\x00" + bytes([type_code, len(shape)]) + b"".join(struct.pack(">I", n) for n in shape) + payload


put("idx", "u8_images", idx(0x08, [2, 3, 3], bytes(range(18))))
put("idx", "u8_labels", idx(0x08, [4], b"\x00\x01\x02\x09"))
put("idx", "f32", idx(0x0D, [2], struct.pack(">2f", 1.5, -2)))
put("idx", "i32_rank2", idx(0x0C, [1, 2], struct.pack(">2i", -1, 5)))
put("idx", "gzip", gzip.compress(idx(0x08, [2, 2, 2], bytes(range(8))), mtime=0))
put("idx", "truncated", idx(0x08, [10], b"\x01\x02"))

put("config", "finetune", json.dumps({"steps": 300, "lr": 0.003, "method": "ram", "flag": True,
                                      "center": [4, 0], "spec": {"type": "bump", "scale": 2.5}}))
put("config", "optional", json.dumps({"optional": -1.5e3, "name": "run one"}))
put("config", "repeated_key", '{"steps": 1, "steps": 2}')
put("config", "nested", '{"spec": {"a": [1, {"b": null}], "c": "\\u00e9"}}')
put("config", "wrong_types", '{"steps": 1.5, "lr": "fast", "method": "magic", "center": [1, "x"]}')

ok = {"protocol": "ramflow-reward/1", "id": "7-1", "scores": [0.5, -1, 2e3]}
put("reward_response", "ok", json.dumps(ok))
put("reward_response", "terms", json.dumps(dict(ok, terms={"accuracy": [1, 0, 1], "d": [0.1, 0.2, 0.3]})))
put("reward_response", "nan", json.dumps(dict(ok, scores=[float("nan"), 0, 0])))
put("reward_response", "count", json.dumps(dict(ok, scores=[0, 0])))
put("reward_response", "error", json.dumps({"error": "the judge crashed"}))
