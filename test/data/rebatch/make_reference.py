"""
Reference outputs for tcd-studio's RebatchLatents, made by ComfyUI's own node (comfy_extras/nodes_rebatch.py,
LatentRebatch.rebatch) run with torch on the CPU, float32.

    python test/data/rebatch/make_reference.py DIR_WITH_nodes_rebatch.py OUT_DIR
Writes OUT_DIR/reference.safetensors (inputs and outputs by key) and OUT_DIR/reference.json (the cases: each input
latent's keys, batch_size, and per output its samples/noise_mask keys and batch_index).
"""
import json
import struct
import sys

import torch

sys.path.insert(0, sys.argv[1])
from nodes_rebatch import LatentRebatch  # noqa: E402

out_dir = sys.argv[2]
g = torch.Generator().manual_seed(7)
tensors = {}


def put(key, t):
    tensors[key] = t.detach().to(torch.float32).contiguous().clone()
    return key


def lat(b, h, w, mask=None, batch_index=None):
    d = {"samples": torch.randn(b, 4, h, w, generator=g)}
    if mask is not None:
        d["noise_mask"] = mask
    if batch_index is not None:
        d["batch_index"] = batch_index
    return d


def rmask(b, h, w):
    return (torch.rand(b, 1, h, w, generator=g) > 0.5).float()


cases_in = {
    "split3by2": ([lat(3, 5, 6)], 2),
    "mixed_sizes_and_mask": ([lat(3, 5, 6), lat(2, 5, 6, mask=rmask(1, 40, 48)), lat(1, 3, 4)], 2),
    "batch_index_kept": ([lat(2, 4, 4, batch_index=[5, 7]), lat(3, 4, 4)], 4),
    "mask_batch_one": ([lat(3, 4, 5, mask=rmask(3, 32, 40))], 1),
    "exact_multiple": ([lat(2, 4, 4), lat(2, 4, 4)], 2),
    "gather_small": ([lat(1, 4, 4), lat(1, 4, 4), lat(1, 4, 4)], 8),
    "size_changes_back": ([lat(3, 4, 4), lat(1, 6, 4), lat(2, 4, 4)], 2),
    "all_ones_mask_dropped": ([lat(2, 4, 4, mask=torch.ones(1, 1, 32, 32)), lat(1, 4, 4)], 2),
}

cases = []
for name, (latents, bs) in cases_in.items():
    inputs = []
    for i, d in enumerate(latents):
        e = {"samples": put(f"{name}/in{i}/samples", d["samples"])}
        if "noise_mask" in d:
            e["noise_mask"] = put(f"{name}/in{i}/noise_mask", d["noise_mask"])
        if "batch_index" in d:
            e["batch_index"] = d["batch_index"]
        inputs.append(e)
    (outs,) = LatentRebatch().rebatch(latents, [bs])
    outputs = []
    for j, o in enumerate(outs):
        e = {"samples": put(f"{name}/out{j}/samples", o["samples"]), "batch_index": list(o["batch_index"])}
        if "noise_mask" in o:
            e["noise_mask"] = put(f"{name}/out{j}/noise_mask", o["noise_mask"])
        outputs.append(e)
    cases.append({"name": name, "batch_size": bs, "inputs": inputs, "outputs": outputs})

header, blobs, off = {}, [], 0
for k, t in tensors.items():
    b = t.numpy().tobytes()
    header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(f"{out_dir}/reference.safetensors", "wb") as fh:
    fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
with open(f"{out_dir}/reference.json", "w") as fh:
    json.dump({"torch": torch.__version__, "cases": cases}, fh, indent=1)
print("cases", len(cases), "tensors", len(tensors))
