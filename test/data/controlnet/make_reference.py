"""
ControlNet references for tcd-studio, computed with torch on the CPU in float32 the way ComfyUI runs a ControlNet:
the ControlNet-specific semantics (hint resize common_upscale nearest-exact/center, broadcast_image_to, control_merge
with strength and chaining, apply_control in the UNet, percent_to_sigma and the sigma-range check of get_control) come
from ComfyUI's own code (excerpts in the ignored folder .exp/w16cn/comfy_cn.py); the networks are plain torch
re-statements of ldm's UNet and cldm's ControlNet, checked here against the diffusers-made UNet fixtures first.

Inputs (in EXP, copied there because the device has no ../shared): sd1_unet.safetensors / sdxl_unet.safetensors
(UNet tensors of ../shared/fixtures/sd1_tiny / sdxl_tiny), sd1_tiny_cases / sdxl_tiny_cases.safetensors,
comfy_schedules.json, and the tiny ControlNets made by server/tools/make-controlnet.ts (test/controlnet-files.ts
seeds): sd1_cn.safetensors (ldm, control_model.*), sdxl_cn.safetensors (ldm, unprefixed).
    python3 test/data/controlnet/make_reference.py .exp/w16cn OUT_DIR
Writes OUT_DIR/reference.safetensors and OUT_DIR/reference.json.
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F

EXP, OUT = sys.argv[1], sys.argv[2]
sys.path.insert(0, EXP)
import comfy_cn as C  # noqa: E402

torch.set_grad_enabled(False)
DT = {"F16": torch.float16, "F32": torch.float32, "I32": torch.int32, "BF16": torch.bfloat16}


def load(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=DT[v["dtype"]]) if b > a else torch.zeros(0)
        t = t.reshape(v["shape"])
        out[k] = t.float() if t.is_floating_point() else t
    return out


def save(tensors, path):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        b = t.detach().float().contiguous().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class Net:
    """ldm UNet / cldm ControlNet over a weight dict with ldm names (no prefix); structure read from the keys."""

    def __init__(self, W, family):
        self.W, self.family = W, family
        self.mc = W["time_embed.0.weight"].shape[1]

    def has(self, k):
        return k in self.W

    def conv(self, p, x, stride=1):
        w = self.W[p + ".weight"]
        if w.ndim == 2:
            w = w[:, :, None, None]
        return F.conv2d(x, w, self.W.get(p + ".bias"), stride=stride, padding=w.shape[-1] // 2)

    def lin(self, p, x):
        w = self.W[p + ".weight"]
        if w.ndim == 4:
            w = w[:, :, 0, 0]
        return F.linear(x, w, self.W.get(p + ".bias"))

    def gn(self, p, x, eps):
        return F.group_norm(x, 32, self.W[p + ".weight"], self.W[p + ".bias"], eps)

    def ln(self, p, x):
        return F.layer_norm(x, (x.shape[-1],), self.W[p + ".weight"], self.W[p + ".bias"], 1e-5)

    def res(self, p, x, emb):
        h = self.conv(p + ".in_layers.2", F.silu(self.gn(p + ".in_layers.0", x, 1e-5)))
        h = h + self.lin(p + ".emb_layers.1", F.silu(emb))[:, :, None, None]
        h = self.conv(p + ".out_layers.3", F.silu(self.gn(p + ".out_layers.0", h, 1e-5)))
        skip = self.conv(p + ".skip_connection", x) if self.has(p + ".skip_connection.weight") else x
        return skip + h

    def attn(self, p, x, ctx):
        q, k, v = self.lin(p + ".to_q", x), self.lin(p + ".to_k", ctx), self.lin(p + ".to_v", ctx)
        B, T, Cc = q.shape
        heads = 8 if self.family == "sd1" else Cc // 64
        split = lambda t: t.reshape(B, -1, heads, Cc // heads).transpose(1, 2)
        o = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(Cc // heads), dim=-1) @ split(v)
        return self.lin(p + ".to_out.0", o.transpose(1, 2).reshape(B, T, Cc))

    def transformer(self, p, x, ctx):
        B, Cc, H, Wd = x.shape
        linear = self.W[p + ".proj_in.weight"].ndim == 2
        h = self.gn(p + ".norm", x, 1e-6)
        if not linear:
            h = self.conv(p + ".proj_in", h)
        h = h.permute(0, 2, 3, 1).reshape(B, H * Wd, Cc)
        if linear:
            h = self.lin(p + ".proj_in", h)
        d = 0
        while self.has(f"{p}.transformer_blocks.{d}.norm1.weight"):
            b = f"{p}.transformer_blocks.{d}"
            n = self.ln(b + ".norm1", h)
            h = self.attn(b + ".attn1", n, n) + h
            h = self.attn(b + ".attn2", self.ln(b + ".norm2", h), ctx) + h
            a, gate = self.lin(b + ".ff.net.0.proj", self.ln(b + ".norm3", h)).chunk(2, dim=-1)
            h = self.lin(b + ".ff.net.2", a * F.gelu(gate)) + h
            d += 1
        if linear:
            h = self.lin(p + ".proj_out", h)
        h = h.reshape(B, H, Wd, Cc).permute(0, 3, 1, 2)
        if not linear:
            h = self.conv(p + ".proj_out", h)
        return h + x

    def block(self, p, x, emb, ctx):
        """a TimestepEmbedSequential: ResBlock [+ SpatialTransformer] [+ Upsample], or a Downsample / conv_in"""
        if self.has(p + ".0.op.weight"):
            return self.conv(p + ".0.op", x, stride=2)
        if self.has(p + ".0.weight"):
            return self.conv(p + ".0", x)
        h = self.res(p + ".0", x, emb)
        i = 1
        if self.has(f"{p}.1.proj_in.weight"):
            h = self.transformer(f"{p}.1", h, ctx)
            i = 2
        if self.has(f"{p}.{i}.conv.weight"):
            h = self.conv(f"{p}.{i}.conv", F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return h

    def count(self, prefix):
        n = 0
        while any(k.startswith(f"{prefix}{n}.") for k in self.W):
            n += 1
        return n

    def emb(self, t, y):
        half = self.mc // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        e = self.lin("time_embed.2", F.silu(self.lin("time_embed.0", torch.cat([torch.cos(args), torch.sin(args)], -1))))
        return e

    def adm(self, y):
        return self.lin("label_emb.0.2", F.silu(self.lin("label_emb.0.0", y)))

    def middle(self, h, emb, ctx):
        h = self.res("middle_block.0", h, emb)
        if self.has("middle_block.1.proj_in.weight"):
            h = self.transformer("middle_block.1", h, ctx)
            return self.res("middle_block.2", h, emb)
        return self.res("middle_block.1", h, emb)

    def unet(self, x, t, ctx, y, control):
        emb = self.emb(t, y)
        if y is not None:
            emb = emb + self.adm(y)
        hs, h = [], x
        for i in range(self.count("input_blocks.")):
            h = self.block(f"input_blocks.{i}", h, emb, ctx)
            h = C.apply_control(h, control, "input")
            hs.append(h)
        h = self.middle(h, emb, ctx)
        h = C.apply_control(h, control, "middle")
        for i in range(self.count("output_blocks.")):
            hsp = C.apply_control(hs.pop(), control, "output")
            h = self.block(f"output_blocks.{i}", torch.cat([h, hsp], dim=1), emb, ctx)
        return self.conv("out.2", F.silu(self.gn("out.0", h, 1e-5)))

    def controlnet(self, x, hint, t, ctx, y):
        """cldm.ControlNet.forward: hint block added after input block 0, a zero conv per block and the middle"""
        emb = self.emb(t, y)
        g = hint
        convs = 0
        while self.has(f"input_hint_block.{2 * convs}.weight"):
            convs += 1
        for j in range(convs):
            g = self.conv(f"input_hint_block.{2 * j}", g, stride=2 if 0 < j < convs - 1 and j % 2 == 0 else 1)
            if j < convs - 1:
                g = F.silu(g)
        if y is not None:
            emb = emb + self.adm(y)
        outs, h = [], x
        for i in range(self.count("input_blocks.")):
            h = self.block(f"input_blocks.{i}", h, emb, ctx)
            if i == 0:
                h = h + g
            outs.append(self.conv(f"zero_convs.{i}.0", h))
        h = self.middle(h, emb, ctx)
        outs.append(self.conv("middle_block_out.0", h))
        return outs


def strip(W, prefix):
    return {k[len(prefix):]: v for k, v in W.items() if k.startswith(prefix)}


def sdxl_y(pooled, time_ids, T):
    half = T // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = time_ids.reshape(-1)[:, None].float() * freqs[None]
    e = torch.cat([torch.cos(args), torch.sin(args)], -1).reshape(time_ids.shape[0], -1)
    return torch.cat([pooled, e], dim=1)


class Applied:
    """One ControlNetApply(Advanced) result: ComfyUI's ControlNet.get_control over our Net."""

    def __init__(self, net, hint_image, strength, start=0.0, end=1.0, prev=None):
        self.net, self.hint_orig, self.strength = net, hint_image.movedim(-1, 1), strength
        self.range_pct, self.prev, self.cond_hint, self.range = (start, end), prev, None, None

    def pre_run(self, ms):
        self.range = (ms.percent_to_sigma(self.range_pct[0]), ms.percent_to_sigma(self.range_pct[1]))
        if self.prev:
            self.prev.pre_run(ms)

    def get_control(self, ms, x_noisy, sigma, ctx, y, batched_number, t_direct=None):
        prev = self.prev.get_control(ms, x_noisy, sigma, ctx, y, batched_number, t_direct) if self.prev else None
        if self.range is not None and (sigma[0] > self.range[0] or sigma[0] < self.range[1]):
            return prev
        if self.cond_hint is None or x_noisy.shape[2] * 8 != self.cond_hint.shape[2] or x_noisy.shape[3] * 8 != self.cond_hint.shape[3]:
            self.cond_hint = C.common_upscale(self.hint_orig, x_noisy.shape[3] * 8, x_noisy.shape[2] * 8, "nearest-exact", "center")
        hint = self.cond_hint
        if x_noisy.shape[0] != hint.shape[0]:
            hint = C.broadcast_image_to(hint, x_noisy.shape[0], batched_number)
        if t_direct is None:
            timestep, xin = ms.timestep(sigma), ms.calculate_input(sigma, x_noisy)
        else:  # component case: x and t given as the UNet's inputs
            timestep, xin = t_direct, x_noisy
        control = self.net.controlnet(xin, hint, timestep.float(), ctx, y)
        cb = C.ControlBase()
        cb.strength = self.strength
        return cb.control_merge(None, control, prev, x_noisy.dtype)


tensors, cases = {}, {}
g = torch.Generator().manual_seed(4321)


def put(k, t):
    tensors[k] = t.detach().float().contiguous().clone()
    return k


def check_unet(fam, unet, cases_f):
    x, t, ctx = cases_f["unet/x"], cases_f["unet/t"], cases_f["unet/context"]
    y = sdxl_y(cases_f["unet/text_embeds"], cases_f["unet/time_ids"], T[fam]) if fam == "sdxl" else None
    out = unet.unet(x, t, ctx, y, None)
    err = (out - cases_f["unet/out"]).abs().max().item()
    print(f"{fam}: our torch UNet vs the diffusers fixture: max abs diff {err:.3g}")
    assert err < 1e-4 * max(1.0, cases_f["unet/out"].abs().max().item()), "reference UNet disagrees with the fixture"
    return x, t, ctx, y


T = {"sd1": None, "sdxl": 16}
sd1 = load(f"{EXP}/sd1_unet.safetensors")
sdxl = load(f"{EXP}/sdxl_unet.safetensors")
T["sdxl"] = (sdxl["model.diffusion_model.label_emb.0.0.weight"].shape[1] - 96) // 6
unet1 = Net(strip(sd1, "model.diffusion_model."), "sd1")
unetx = Net(strip(sdxl, "model.diffusion_model."), "sdxl")
cn1 = Net(strip(load(f"{EXP}/sd1_cn.safetensors"), "control_model."), "sd1")
cnx = Net(load(f"{EXP}/sdxl_cn.safetensors"), "sdxl")
c1, cx = load(f"{EXP}/sd1_tiny_cases.safetensors"), load(f"{EXP}/sdxl_tiny_cases.safetensors")

# 1. one UNet eval with a ControlNet at strength 0.7 (SD1; hint of another aspect: centre crop + nearest-exact)
x, t, ctx, y = check_unet("sd1", unet1, c1)
hint = torch.rand(1, 50, 70, 3, generator=g)
a = Applied(cn1, hint, 0.7)
raw = cn1.controlnet(x, C.common_upscale(hint.movedim(-1, 1), 64, 64, "nearest-exact", "center").expand(2, -1, -1, -1), t, ctx, None)
for i, r in enumerate(raw):
    put(f"sd1/control/{i}", r)
out = unet1.unet(x, t, ctx, None, a.get_control(None, x, None, ctx, None, 1, t_direct=t))
cases["sd1"] = {"hint": put("sd1/hint", hint), "strength": 0.7, "out": put("sd1/out", out), "controls": len(raw)}

# 2. chained: a second ControlNetApply on top (another hint, batch 2, strength 0.4): residuals sum
hint2 = torch.rand(2, 40, 40, 3, generator=g)
b = Applied(cn1, hint2, 0.4, prev=Applied(cn1, hint, 0.7))
out = unet1.unet(x, t, ctx, None, b.get_control(None, x, None, ctx, None, 1, t_direct=t))
cases["sd1_chain"] = {"hints": [put("sd1_chain/hint2", hint2)], "strengths": [0.7, 0.4], "out": put("sd1_chain/out", out)}

# 3. SDXL (ADM input to the ControlNet too), strength 0.7
x, t, ctx, y = check_unet("sdxl", unetx, cx)
hintx = torch.rand(1, 70, 90, 3, generator=g)
ax = Applied(cnx, hintx, 0.7)
out = unetx.unet(x, t, ctx, y, ax.get_control(None, x, None, ctx, y, 1, t_direct=t))
cases["sdxl"] = {"hint": put("sdxl/hint", hintx), "strength": 0.7, "out": put("sdxl/out", out)}

# 4. a whole KSampler run (euler, normal, 6 steps, cfg 4) with ControlNetApplyAdvanced(strength 0.9, 0.2 .. 0.7)
#    on both sides; cond and uncond batched as ComfyUI's calc_cond_batch does (batched_number 2)
ms = C.ModelSamplingDiscrete()
sched = json.load(open(f"{EXP}/comfy_schedules.json"))
sigmas = torch.tensor(sched["tables"]["normal@6"], dtype=torch.float32)
pos, neg = c1["text/last"][0:1], c1["text/last"][1:2]
hint_k = torch.rand(1, 48, 80, 3, generator=g)
ctl = Applied(cn1, hint_k, 0.9, 0.2, 0.7)
ctl.pre_run(ms)
noise = torch.randn([1, 4, 8, 8], generator=torch.Generator().manual_seed(42))
xk = noise * torch.sqrt(1.0 + sigmas[0] ** 2.0)
applied_steps = []
for i in range(len(sigmas) - 1):
    s = sigmas[i] * torch.ones(2)
    xx = torch.cat([xk, xk])
    cc = torch.cat([pos, neg])
    control = ctl.get_control(ms, xx, s, cc, None, 2)
    applied_steps.append(control is not None)
    eps = unet1.unet(ms.calculate_input(s, xx), ms.timestep(s).float(), cc, None, control)
    den = ms.calculate_denoised(s, eps, xx)
    cond, uncond = den[0:1], den[1:2]
    denoised = uncond + (cond - uncond) * 4.0
    d = (xk - denoised) / sigmas[i]
    xk = xk + d * (sigmas[i + 1] - sigmas[i])
cases["ksampler"] = {
    "sampler": "euler", "scheduler": "normal", "steps": 6, "cfg": 4.0, "seed": 42,
    "strength": 0.9, "start_percent": 0.2, "end_percent": 0.7, "sigmas": sigmas.tolist(),
    "range_sigmas": list(ctl.range), "control_applied": applied_steps,
    "hint": put("ksampler/hint", hint_k), "positive": put("ksampler/positive", pos), "negative": put("ksampler/negative", neg),
    "out": put("ksampler/out", xk),
}
print("ksampler control applied per step:", applied_steps, "range", ctl.range)
save(tensors, f"{OUT}/reference.safetensors")
json.dump({"torch": torch.__version__, "cases": cases}, open(f"{OUT}/reference.json", "w"), indent=1)
print("wrote", len(tensors), "tensors")
