"""Checks python/ramflow_models.py against ramflow: loads model NAME of CHECKPOINT, evaluates it on the
inputs of IO (a safetensors file with x, t, cond and ramflow's velocity v) and exits 1 unless
max |v_python - v_ramflow| <= 1e-5 (relative to max(1, |v|))."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import torch  # noqa: E402
import ramflow_models as rm  # noqa: E402


def main():
    checkpoint, name, io = sys.argv[1:4]
    torch.set_num_threads(1)
    model = rm.load(checkpoint, name)
    tensors, _ = rm.read_safetensors(io)
    with torch.no_grad():
        cond = tensors["cond"] if tensors["cond"].numel() > 0 else None
        v = model(tensors["x"], tensors["t"], cond)
    ref = tensors["v"]
    err = (v - ref).abs().max().item() / max(1.0, ref.abs().max().item())
    print(f"{name}: max relative difference {err:.3e} over {ref.numel()} values")
    sys.exit(0 if err <= 1e-5 and v.shape == ref.shape else 1)


if __name__ == "__main__":
    main()
