"""
Reference UNet outputs for tcd-studio's HypernetworkLoader, made with ComfyUI's own hypernetwork code
(comfy_extras/nodes_hypernetwork.py load_hypernetwork_patch, run verbatim) patched into an SD1 UNet forward written
here in torch after ldm's openaimodel / attention (BasicTransformerBlock's attn1_patch / attn2_patch calls), on
../shared/fixtures/sd1_tiny.safetensors (context width 128). CPU, float32.

    python test/data/hypernetwork/make_reference.py DIR OUT_DIR
DIR holds hn_excerpt.py (ComfyUI's load_hypernetwork_patch), comfy/utils.py (load_torch_file = torch.load with
weights_only) and sd1_tiny.safetensors. Writes to OUT_DIR: two tiny random hypernetworks in A1111's .pt layout
(hn_relu.pt, hn_mish_ln.pt) and the same in tcd-studio's .safetensors layout (tensors "{width}.{0|1}.{layer}.weight"
/ ".bias", options in the metadata), and reference.safetensors: the inputs x, t, context and eps without a
hypernetwork, with hn_relu at 0.8, and with hn_relu 0.8 then hn_mish_ln -0.5 stacked.
The plain eps checks this script's UNet against tcd-studio's (itself checked against diffusers).
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, sys.argv[1])
from hn_excerpt import load_hypernetwork_patch  # noqa: E402

DIR, OUT = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
DT = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DT[v["dtype"]]).reshape(v["shape"])
        out[k] = torch.from_numpy(arr.astype(np.float32))
    return out


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for k, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


W = read_safetensors(f"{DIR}/sd1_tiny.safetensors")
P = "model.diffusion_model."
HEADS, GROUPS = 8, 32


def lin(p, x):
    w = W[p + ".weight"]
    if w.dim() == 4:
        w = w[:, :, 0, 0]
    b = W.get(p + ".bias")
    return F.linear(x, w, b)


def conv(p, x, stride=1, pad=None):
    w = W[p + ".weight"]
    return F.conv2d(x, w, W[p + ".bias"], stride=stride, padding=w.shape[-1] // 2 if pad is None else pad)


def gn(p, x, eps):
    return F.group_norm(x, GROUPS, W[p + ".weight"], W[p + ".bias"], eps)


def ln(p, x):
    return F.layer_norm(x, (x.shape[-1],), W[p + ".weight"], W[p + ".bias"], 1e-5)


def res(p, x, emb):
    h = conv(p + ".in_layers.2", F.silu(gn(p + ".in_layers.0", x, 1e-5)))
    h = h + lin(p + ".emb_layers.1", F.silu(emb))[:, :, None, None]
    h = conv(p + ".out_layers.3", F.silu(gn(p + ".out_layers.0", h, 1e-5)))
    skip = conv(p + ".skip_connection", x) if (p + ".skip_connection.weight") in W else x
    return skip + h


def attention(q, k, v):
    b, tq, c = q.shape
    d = c // HEADS
    q, k, v = (z.reshape(b, -1, HEADS, d).transpose(1, 2) for z in (q, k, v))
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v
    return a.transpose(1, 2).reshape(b, tq, c)


def block(p, x, context, patches):
    # BasicTransformerBlock with ComfyUI's attn1_patch / attn2_patch calls: patch(n, context, value, extra_options)
    n = ln(p + ".norm1", x)
    c1, v1 = n, n
    for pt in patches:
        n, c1, v1 = pt(n, c1, v1, {})
    x = x + lin(p + ".attn1.to_out.0", attention(lin(p + ".attn1.to_q", n), lin(p + ".attn1.to_k", c1),
                                                 lin(p + ".attn1.to_v", v1)))
    n = ln(p + ".norm2", x)
    c2, v2 = context, context
    for pt in patches:
        n, c2, v2 = pt(n, c2, v2, {})
    x = x + lin(p + ".attn2.to_out.0", attention(lin(p + ".attn2.to_q", n), lin(p + ".attn2.to_k", c2),
                                                 lin(p + ".attn2.to_v", v2)))
    h = lin(p + ".ff.net.0.proj", ln(p + ".norm3", x))
    a, gate = h.chunk(2, dim=-1)
    return x + lin(p + ".ff.net.2", a * F.gelu(gate))


def spatial(p, x, context, patches):
    b, c, hh, ww = x.shape
    h = gn(p + ".norm", x, 1e-6)
    h = lin(p + ".proj_in", h.reshape(b, c, hh * ww).transpose(1, 2))
    j = 0
    while f"{p}.transformer_blocks.{j}.norm1.weight" in W:
        h = block(f"{p}.transformer_blocks.{j}", h, context, patches)
        j += 1
    h = lin(p + ".proj_out", h).transpose(1, 2).reshape(b, c, hh, ww)
    return h + x


def has(p):
    return any(k.startswith(p + ".") for k in W)


def unet(x, t, context, patches):
    mc = W[P + "input_blocks.0.0.weight"].shape[0]
    half = mc // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    emb = lin(P + "time_embed.2", F.silu(lin(P + "time_embed.0", emb)))
    h = conv(P + "input_blocks.0.0", x)
    hs = [h]
    b = 1
    while has(f"{P}input_blocks.{b}"):
        q = f"{P}input_blocks.{b}"
        if has(q + ".0.op"):
            h = conv(q + ".0.op", h, stride=2, pad=1)
        else:
            h = res(q + ".0", h, emb)
            if has(q + ".1"):
                h = spatial(q + ".1", h, context, patches)
        hs.append(h)
        b += 1
    h = res(P + "middle_block.0", h, emb)
    h = spatial(P + "middle_block.1", h, context, patches)
    h = res(P + "middle_block.2", h, emb)
    b = 0
    while has(f"{P}output_blocks.{b}"):
        q = f"{P}output_blocks.{b}"
        h = res(q + ".0", torch.cat([h, hs.pop()], dim=1), emb)
        k = 1
        if has(q + ".1.norm"):
            h = spatial(q + ".1", h, context, patches)
            k = 2
        if has(f"{q}.{k}.conv"):
            h = conv(f"{q}.{k}.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"))
        b += 1
    assert not hs
    return conv(P + "out.2", F.silu(gn(P + "out.0", h, 1e-5)))


def module(sizes, layer_norm, std):
    """A1111 HypernetworkModule state dict: Linear at even-ish Sequential indices (activation / LayerNorm between)."""
    sd, idx = {}, 0
    for i in range(len(sizes) - 1):
        sd[f"linear.{idx}.weight"] = torch.randn(sizes[i + 1], sizes[i]) * std
        sd[f"linear.{idx}.bias"] = torch.randn(sizes[i + 1]) * std
        idx += 2  # the activation's slot
        if layer_norm:
            sd[f"linear.{idx}.weight"] = 1 + torch.randn(sizes[i + 1]) * 0.1
            sd[f"linear.{idx}.bias"] = torch.randn(sizes[i + 1]) * 0.1
            idx += 1
    return sd


def hypernet(name, widths, structure, activation, layer_norm, std):
    sd = {w: [module([int(w * m) for m in structure], layer_norm, std) for _ in range(2)] for w in widths}
    opts = {"activation_func": activation, "is_layer_norm": layer_norm, "use_dropout": False,
            "activate_output": False, "last_layer_dropout": False, "weight_initialization": "Normal",
            "layer_structure": structure, "name": name}
    torch.save({**sd, **opts}, f"{OUT}/{name}.pt")
    flat = {f"{w}.{i}.{k}": v for w, mods in sd.items() for i, m in enumerate(mods) for k, v in m.items()}
    meta = {k: str(v) for k, v in opts.items()}
    write_safetensors(f"{OUT}/{name}.safetensors", flat, meta)


hypernet("hn_relu", [128, 64], [1, 2, 1], "relu", False, 0.08)
hypernet("hn_mish_ln", [128], [1, 1, 1], "mish", True, 0.1)

g = torch.Generator().manual_seed(11)
x = torch.randn(2, 4, 8, 8, generator=g)
t = torch.tensor([500.0, 20.0])
context = torch.randn(2, 77, 128, generator=g)
with torch.no_grad():
    relu = load_hypernetwork_patch(f"{OUT}/hn_relu.pt", 0.8)
    mish = load_hypernetwork_patch(f"{OUT}/hn_mish_ln.pt", -0.5)
    out = {"x": x, "t": t, "context": context, "eps_plain": unet(x, t, context, []),
           "eps_relu": unet(x, t, context, [relu]), "eps_relu_mish": unet(x, t, context, [relu, mish])}
write_safetensors(f"{OUT}/reference.safetensors", out, {"torch": torch.__version__})
for k in ("eps_relu", "eps_relu_mish"):
    print(k, "differs from plain by", (out[k] - out["eps_plain"]).abs().max().item())
