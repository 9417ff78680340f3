"""Encode prompts for ramflow with a Stable Diffusion 3 / 3.5 pipeline's own text encoders.

ramflow never runs the text encoders: it reads the prompts' embeddings from one safetensors file,
which this script writes with diffusers' StableDiffusion3Pipeline.encode_prompt (CLIP-L, CLIP-G
and T5-XXL, exactly as the pipeline encodes a prompt before sampling):

  prompt_embeds                  [N, 77 + T, 4096]  in the prompt file's order
  pooled_prompt_embeds           [N, 2048]
  negative_prompt_embeds         [1, 77 + T, 4096]  the encoded empty prompt (guidance's negative)
  negative_pooled_prompt_embeds  [1, 2048]
  eval_prompt_embeds, eval_pooled_prompt_embeds     with --eval-prompts

(T = --max-sequence-length; the widths are the model's joint_attention_dim and
pooled_projection_dim.) Prompt files hold one prompt per line, or JSON lines {"prompt": ..., ...}
whose other fields are metadata for rewards; blank lines are skipped, as ramflow skips them.

  python python/encode_prompts.py --model stabilityai/stable-diffusion-3.5-medium \\
      --prompts prompts.txt --eval-prompts eval.txt --out embeds.safetensors --device cuda

Needs the user's own Python with torch, diffusers, transformers (and sentencepiece for T5), and
the model's text encoders (a Hugging Face id or a local pipeline folder).
"""

import argparse
import json
import sys


def read_prompts(path):
    prompts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if line.startswith("{"):
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{number}: not a JSON object: {e}")
                if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                    sys.exit(f'{path}:{number}: a JSON line needs a string "prompt"')
                prompts.append(item["prompt"])
            else:
                prompts.append(line)
    if not prompts:
        sys.exit(f"{path}: no prompts")
    return prompts


def encode(pipe, prompts, batch, max_sequence_length, device):
    """(prompt_embeds [N, L, D], pooled [N, P]) in float32 on the CPU, `batch` prompts at a time."""
    import torch

    embeds, pooled = [], []
    for i in range(0, len(prompts), batch):
        with torch.no_grad():
            e, _, p, _ = pipe.encode_prompt(
                prompt=prompts[i:i + batch], prompt_2=None, prompt_3=None, device=device,
                num_images_per_prompt=1, do_classifier_free_guidance=False,
                max_sequence_length=max_sequence_length)
        embeds.append(e.float().cpu())
        pooled.append(p.float().cpu())
    return torch.cat(embeds), torch.cat(pooled)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="a diffusers SD3 / SD3.5 pipeline: Hugging Face id or local folder")
    parser.add_argument("--prompts", required=True, help="the training prompts")
    parser.add_argument("--eval-prompts", help="held-out evaluation prompts")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--max-sequence-length", type=int, default=256,
                        help="T5 tokens (diffusers' default 256; Flow-GRPO uses 128)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="the text encoders' dtype (the file is float32 either way)")
    parser.add_argument("--batch", type=int, default=16, help="prompts encoded at a time")
    args = parser.parse_args(argv)
    if not args.out.endswith(".safetensors"):
        sys.exit(f"--out: '{args.out}' must end in .safetensors")
    prompts = read_prompts(args.prompts)
    eval_prompts = read_prompts(args.eval_prompts) if args.eval_prompts else None

    import torch
    from diffusers import StableDiffusion3Pipeline
    from safetensors.torch import save_file

    # The text encoders alone: no transformer, no VAE.
    pipe = StableDiffusion3Pipeline.from_pretrained(
        args.model, transformer=None, vae=None, torch_dtype=getattr(torch, args.dtype))
    pipe.to(args.device)
    tensors = {}
    tensors["prompt_embeds"], tensors["pooled_prompt_embeds"] = encode(
        pipe, prompts, args.batch, args.max_sequence_length, args.device)
    tensors["negative_prompt_embeds"], tensors["negative_pooled_prompt_embeds"] = encode(
        pipe, [""], 1, args.max_sequence_length, args.device)
    if eval_prompts:
        tensors["eval_prompt_embeds"], tensors["eval_pooled_prompt_embeds"] = encode(
            pipe, eval_prompts, args.batch, args.max_sequence_length, args.device)
    metadata = {"ramflow_prompts": json.dumps({"model": args.model, "prompts": len(prompts),
                                               "eval_prompts": len(eval_prompts or []),
                                               "max_sequence_length": args.max_sequence_length})}
    save_file({k: v.contiguous() for k, v in tensors.items()}, args.out, metadata=metadata)
    print(f"wrote {args.out}: {len(prompts)} prompts, embeddings "
          f"{list(tensors['prompt_embeds'].shape)}, pooled {list(tensors['pooled_prompt_embeds'].shape)}")


if __name__ == "__main__":
    main()
