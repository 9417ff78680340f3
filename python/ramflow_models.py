"""The networks of ramflow checkpoints in PyTorch: load a ramflow checkpoint and evaluate its velocity.

    import ramflow_models as rm
    model = rm.load("checkpoints/final.safetensors", "policy")   # nn.Module in eval mode
    v = model(x, t, labels)                                      # the same velocity as ramflow

Checkpoints are safetensors files; the "ramflow" entry of their metadata holds {"models": {name: spec}}
and each model's tensors are named "<name>.<parameter>"; a tensor that several models share (a LoRA
policy's frozen base, in a training checkpoint) is written once, and "aliases" maps its other names to it. The specs are those of ramflow's registered
models ("unet": include/ramflow/unet.h, "mlp": include/ramflow/mlp_velocity.h); the definitions below
follow those headers term by term. Needs only torch (Debian's python3-torch will do); the safetensors
file is parsed here, so the safetensors package is not needed.
"""
import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

NULL_LABEL = -1  # the null condition of classifier-free guidance
_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def read_safetensors(path):
    """Returns (tensors: dict name -> tensor, metadata: dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        t = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta


class UNetBlock(nn.Module):
    """A residual block, optional attention and resampling (unet.h: "A block is ...")."""

    HEAD_DIM = 32

    def __init__(self, cin, cout, emb_dim, groups, attention, resample, up_out):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.attention = attention
        if attention:
            self.norm_attn = nn.GroupNorm(groups, cout, eps=1e-5)
            self.qkv = nn.Linear(cout, 3 * cout)
            self.proj = nn.Linear(cout, cout)
        self.mode = resample
        if resample < 0:
            self.resample = nn.Conv2d(cout, cout, 3, stride=2, padding=1)
        elif resample > 0:
            self.resample = nn.Conv2d(cout, up_out, 3, padding=1)

    def block(self, h, emb):
        a = self.conv1(F.silu(self.norm1(h))) + self.emb_proj(F.silu(emb))[:, :, None, None]
        out = (self.skip(h) if self.skip is not None else h) + self.conv2(F.silu(self.norm2(a)))
        if not self.attention:
            return out
        B, C, H, W = out.shape
        N, d = H * W, self.HEAD_DIM
        seq = self.norm_attn(out).flatten(2).transpose(1, 2)                       # [B, N, C]
        q, k, v = self.qkv(seq).reshape(B, N, 3, C // d, d).permute(2, 0, 3, 1, 4)  # [B, h, N, d] each
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        y = (att @ v).permute(0, 2, 1, 3).reshape(B, N, C)
        return out + self.proj(y).transpose(1, 2).reshape(B, C, H, W)

    def do_resample(self, h):
        if self.mode < 0:
            return self.resample(h)
        if self.mode > 0:
            return self.resample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return h


class UNet(nn.Module):
    """ramflow's "unet" model (include/ramflow/unet.h)."""

    def __init__(self, in_channels=1, image_size=28, channels=16, mult=(1, 2, 4), num_classes=0,
                 attention=True, groups=8):
        super().__init__()
        c0, E, L = channels, 4 * channels, len(mult)
        c = [channels * m for m in mult]
        self.num_classes = num_classes
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(c0 // 2, dtype=torch.float32)
                                                / (c0 // 2)))
        self.conv_in = nn.Conv2d(in_channels, c0, 3, padding=1)
        self.time_mlp = nn.Sequential(nn.Linear(c0, E), nn.SiLU(), nn.Linear(E, E))
        self.class_emb = nn.Embedding(num_classes + 1, E) if num_classes > 0 else None
        self.down, width = nn.ModuleList(), c0
        for i in range(L):
            self.down.append(UNetBlock(width, c[i], E, groups, False, -1 if i < L - 1 else 0, 0))
            width = c[i]
        self.mid = nn.ModuleList([UNetBlock(width, width, E, groups, attention, 0, 0),
                                  UNetBlock(width, width, E, groups, False, 0, 0)])
        self.up = nn.ModuleList()
        for i in reversed(range(L)):
            self.up.append(UNetBlock(width + c[i], c[i], E, groups, False, 1 if i > 0 else 0,
                                     c[i - 1] if i > 0 else 0))
            width = c[i - 1] if i > 0 else c[i]
        self.norm_out = nn.GroupNorm(groups, c[0], eps=1e-5)
        self.conv_out = nn.Conv2d(c[0], in_channels, 3, padding=1)

    def forward(self, x, t, cond=None):
        phase = (1000.0 * t.to(x.dtype))[:, None] * self.freqs
        emb = self.time_mlp(torch.cat([torch.sin(phase), torch.cos(phase)], 1))
        if self.class_emb is not None:
            labels = cond.long()
            labels = torch.where(labels == NULL_LABEL, torch.full_like(labels, self.num_classes), labels)
            emb = emb + self.class_emb(labels)
        h, skips = self.conv_in(x), []
        for b in self.down:
            h = b.block(h, emb)
            skips.append(h)
            h = b.do_resample(h)
        for b in self.mid:
            h = b.block(h, emb)
        for b in self.up:
            h = b.do_resample(b.block(torch.cat([h, skips.pop()], 1), emb))
        return self.conv_out(F.silu(self.norm_out(h)))


class MLPVelocity(nn.Module):
    """ramflow's "mlp" model (include/ramflow/mlp_velocity.h); weights are stored transposed, [in, out]."""

    def __init__(self, dim, hidden=128, depth=3, frequencies=8, num_classes=0, class_dim=16):
        super().__init__()
        self.dim = dim
        self.register_buffer("freqs", torch.pow(2.0, torch.arange(frequencies, dtype=torch.float32)) * math.pi)
        self.class_embedding = nn.Embedding(num_classes, class_dim) if num_classes > 0 else None
        width = dim + 2 * frequencies + (class_dim if num_classes > 0 else 0)
        self.depth = depth
        for l in range(depth + 1):
            out = dim if l == depth else hidden
            self.register_parameter(f"layer{l}_weight_t", nn.Parameter(torch.zeros(width, out)))
            self.register_parameter(f"layer{l}_bias", nn.Parameter(torch.zeros(out)))
            width = out

    def forward(self, x, t, cond=None):
        B = x.shape[0]
        phase = t.to(x.dtype)[:, None] * self.freqs
        parts = [x.reshape(B, self.dim), torch.sin(phase), torch.cos(phase)]
        if self.class_embedding is not None:
            parts.append(self.class_embedding(cond.long()))
        h = torch.cat(parts, 1)
        for l in range(self.depth + 1):
            h = h @ getattr(self, f"layer{l}_weight_t") + getattr(self, f"layer{l}_bias")
            if l < self.depth:
                h = F.silu(h)
        return h.reshape(x.shape)


def build(spec):
    """The network of a ramflow model spec (a dict with "type")."""
    spec = dict(spec)
    kind = spec.pop("type")
    if kind == "unet":
        spec["mult"] = tuple(spec.get("mult", (1, 2, 4)))
        return UNet(**spec)
    if kind == "mlp":
        return MLPVelocity(**spec)
    raise ValueError(f"model type '{kind}' has no PyTorch definition here (known: unet, mlp)")


def merge_lora(state, rank, alpha):
    """Folds LoRA adapters into base weights (include/ramflow/lora.h): from a "lora" model's tensors
    "base.<layer>.weight" and "lora.<layer>.lora_A.weight" / "lora_B.weight", the base's state dict with
    W = W0 + (alpha / r) B A (B A as [out, r] x [r, in kh kw], reshaped to W0's shape)."""
    merged = {k[len("base."):]: v.clone() for k, v in state.items() if k.startswith("base.")}
    for key, a in state.items():
        if not (key.startswith("lora.") and key.endswith(".lora_A.weight")):
            continue
        layer = key[len("lora."):-len(".lora_A.weight")]
        b = state[f"lora.{layer}.lora_B.weight"]
        w0 = merged[layer + ".weight"]
        merged[layer + ".weight"] = w0 + (alpha / rank) * (b.flatten(1) @ a.flatten(1)).reshape(w0.shape)
    return merged


def load(path, name=None):
    """The model `name` of a ramflow checkpoint (default: "policy", else "base", else the only one).
    A LoRA model ("type": "lora") comes back as its base architecture with the adapters merged."""
    tensors, meta = read_safetensors(path)
    info = json.loads(meta["ramflow"])
    for alias, written in info.get("aliases", {}).items():  # a tensor shared by models is written once
        tensors[alias] = tensors[written]
    specs = info["models"]
    if name is None:
        name = "policy" if "policy" in specs else "base" if "base" in specs else next(iter(specs))
    if name not in specs:
        raise KeyError(f"{path}: no model '{name}' (it has: {', '.join(specs)})")
    spec = specs[name]
    prefix = name + "."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if spec["type"] == "lora":
        state = merge_lora(state, spec["rank"], spec["alpha"])
        spec = spec["base"]
    model = build(spec)
    model.load_state_dict(state, strict=True)
    return model.eval()


class ImageClassifier(nn.Module):
    """The image classifiers of ramflow's classifier reward and evaluation (include/ramflow/classifier.h):
    "cnn" (BatchNorm, max-pooling, dropout 0.3 before fc2) and "resnet" (GroupNorm, residual blocks).
    forward returns the logits [B, K]; features the 128-d penultimate activations."""

    FEATURES = 128

    def __init__(self, arch="cnn", in_channels=1, image_size=28, num_classes=10):
        super().__init__()
        self.arch = arch
        C, S, K = in_channels, image_size, num_classes

        def conv(cin, cout, k, stride=1):
            return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)

        if arch == "cnn":
            self.conv1, self.conv2, self.conv3, self.conv4 = conv(C, 16, 3), conv(16, 32, 3), conv(32, 64, 3), conv(64, 64, 3)
            self.bn2, self.bn3, self.bn4 = nn.BatchNorm2d(32), nn.BatchNorm2d(64), nn.BatchNorm2d(64)
            self.fc1 = nn.Linear(64 * (S // 4) * (S // 4), self.FEATURES)
        elif arch == "resnet":
            self.conv1, self.conv2, self.conv3 = conv(C, 32, 5), conv(32, 32, 3), conv(32, 32, 3)
            self.conv4, self.conv5, self.conv6 = conv(32, 64, 3, 2), conv(64, 64, 3), conv(64, 64, 3)
            for i, w in enumerate([32, 32, 32, 64, 64, 64], start=1):
                setattr(self, f"gn{i}", nn.GroupNorm(8, w))
            self.fc1 = nn.Linear(64, self.FEATURES)
        else:
            raise ValueError(f"classifier arch must be cnn or resnet, got '{arch}'")
        self.fc2 = nn.Linear(self.FEATURES, K)

    def features(self, x):
        if self.arch == "cnn":
            h = F.relu(self.conv1(x))
            h = F.max_pool2d(F.relu(self.bn2(self.conv2(h))), 2)
            h = F.max_pool2d(F.relu(self.bn3(self.conv3(h))), 2)
            h = F.relu(self.bn4(self.conv4(h)))
            return F.relu(self.fc1(h.flatten(1)))
        h = F.avg_pool2d(F.silu(self.gn1(self.conv1(x))), 2)
        h = h + F.silu(self.gn3(self.conv3(F.silu(self.gn2(self.conv2(h))))))
        h = F.silu(self.gn4(self.conv4(h)))
        h = h + F.silu(self.gn6(self.conv6(F.silu(self.gn5(self.conv5(h))))))
        return F.silu(self.fc1(h.mean((2, 3))))

    def forward(self, x):
        f = self.features(x)
        if self.arch == "cnn":
            f = F.dropout(f, 0.3, self.training)
        return self.fc2(f)


def load_classifier(path):
    """A classifier file of `ramflow train-classifier` (its tensors are the module's own names), in eval mode."""
    tensors, meta = read_safetensors(path)
    spec = dict(json.loads(meta["ramflow"])["classifier"])
    spec.pop("type", None)
    model = ImageClassifier(**spec)
    model.load_state_dict(tensors, strict=True)
    return model.eval()
