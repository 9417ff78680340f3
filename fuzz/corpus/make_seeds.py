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

# diffusers: the first byte picks the reader (0 index, 1 transformer config, 2 VAE config).
sd35 = {"_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.42.1", "attention_head_dim": 8,
        "caption_projection_dim": 16, "dual_attention_layers": [0], "in_channels": 16,
        "joint_attention_dim": 24, "num_attention_heads": 2, "num_layers": 3, "out_channels": 16,
        "patch_size": 2, "pooled_projection_dim": 20, "pos_embed_max_size": 12, "qk_norm": "rms_norm",
        "sample_size": 8}
vae = {"_class_name": "AutoencoderKL", "block_out_channels": [8, 16, 16], "latent_channels": 16,
       "layers_per_block": 1, "norm_num_groups": 4, "scaling_factor": 1.5305, "shift_factor": 0.0609,
       "up_block_types": ["UpDecoderBlock2D"] * 3, "use_post_quant_conv": False}
put("diffusers", "index", b"\x00" + json.dumps({"metadata": {"total_size": 8}, "weight_map": {
    "proj_out.weight": "m-00001-of-00002.safetensors", "proj_out.bias": "m-00002-of-00002.safetensors"}}).encode())
put("diffusers", "index_escape", b"\x00" + json.dumps({"weight_map": {"a": "../x.safetensors"}}).encode())
put("diffusers", "sd35", b"\x01" + json.dumps(sd35).encode())
put("diffusers", "sd3_bad", b"\x01" + json.dumps(dict(sd35, caption_projection_dim=17, qk_norm=None)).encode())
put("diffusers", "vae", b"\x02" + json.dumps(vae).encode())
put("diffusers", "vae_bad", b"\x02" + json.dumps(dict(vae, norm_num_groups=3, act_fn="gelu")).encode())
