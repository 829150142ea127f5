"""
Reference outputs for tcd-studio's 9-channel inpainting (InpaintModelConditioning, the UNet's concat channels and a
KSampler run through them), made with ComfyUI's own inpainting logic run with torch on the CPU, float32:
InpaintModelConditioning.encode, BaseModel.concat_cond (inpaint concat keys "mask", "masked_image" and its defaults),
prepare_mask, KSamplerX0Inpaint, cfg, ModelSamplingDiscrete (EPS), the normal scheduler and sample_euler, from the
ignored excerpt file comfy_inpaint_subset.py (verbatim ComfyUI code, not part of tcd-studio).

The networks are written here in plain torch from the LDM layout (openaimodel.UNetModel for SD1: ResBlocks,
SpatialTransformers with 8 heads, GEGLU; the AutoencoderKL encoder/decoder); the script first checks them against
the shared fixtures made with diffusers (sd1_tiny: unet/out, vae/encoded_mean, vae/decoded) and records the errors.

Inputs (make-inputs.ts): the tiny 9-channel SD1 checkpoint ('tiny-sd1-inpaint', seed 16) and inputs.safetensors.
Run on a machine with torch + numpy, everything in one folder DIR (this script, comfy_inpaint_subset.py, the
checkpoint, inputs.safetensors, and sd1_tiny.safetensors + sd1_tiny_cases.safetensors from the fixtures):
    python DIR/make_reference.py DIR OUT_DIR
Writes OUT_DIR/reference.safetensors and OUT_DIR/reference.json.
"""
import hashlib
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_grad_enabled(False)
DIR, OUT = sys.argv[1], sys.argv[2]
sys.path.insert(0, DIR)
import comfy_inpaint_subset as C  # noqa: E402

DT = {"F16": np.float16, "F32": np.float32, "I32": np.int32, "I64": np.int64}


def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        if v["dtype"] not in DT:
            continue
        s, e = v["data_offsets"]
        a = np.frombuffer(b[8 + n + s:8 + n + e], dtype=DT[v["dtype"]]).reshape(v["shape"])
        out[k] = torch.from_numpy(a.astype(np.float32) if a.dtype.kind == "f" else a.copy())
    return out


def save(tensors, path):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        raw = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def sub(w, prefix):
    return {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}


# ---- plain torch networks in the LDM layout ----
def conv(x, w, p, stride=1, padding=1):
    return F.conv2d(x, w[p + ".weight"], w.get(p + ".bias"), stride, padding)


def lin(x, w, p):
    return F.linear(x, w[p + ".weight"], w.get(p + ".bias"))


def gn(x, w, p, eps):
    return F.group_norm(x, 32, w[p + ".weight"], w[p + ".bias"], eps)


def has_prefix(w, p):
    return any(k.startswith(p) for k in w)


def count(w, p):
    n = 0
    while has_prefix(w, f"{p}{n}."):
        n += 1
    return n


def res_block(x, emb, w, p):
    h = conv(F.silu(gn(x, w, p + ".in_layers.0", 1e-5)), w, p + ".in_layers.2")
    h = h + lin(F.silu(emb), w, p + ".emb_layers.1")[:, :, None, None]
    h = conv(F.silu(gn(h, w, p + ".out_layers.0", 1e-5)), w, p + ".out_layers.3")
    skip = conv(x, w, p + ".skip_connection", padding=0) if p + ".skip_connection.weight" in w else x
    return skip + h


def attention(x, ctx, w, p, heads):
    q, k, v = lin(x, w, p + ".to_q"), lin(ctx, w, p + ".to_k"), lin(ctx, w, p + ".to_v")
    b, n, c = q.shape
    d = c // heads
    q, k, v = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    a = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, dim=-1) @ v
    return lin(a.transpose(1, 2).reshape(b, n, c), w, p + ".to_out.0")


def spatial_transformer(x, ctx, w, p, heads):
    b, c, hh, ww = x.shape
    x_in = x
    x = F.group_norm(x, 32, w[p + ".norm.weight"], w[p + ".norm.bias"], 1e-6)
    linear = w[p + ".proj_in.weight"].ndim == 2
    if not linear:
        x = conv(x, w, p + ".proj_in", padding=0)
    x = x.permute(0, 2, 3, 1).reshape(b, hh * ww, -1)
    if linear:
        x = lin(x, w, p + ".proj_in")
    for i in range(count(w, p + ".transformer_blocks.")):
        q = f"{p}.transformer_blocks.{i}"

        def ln(t, name):
            return F.layer_norm(t, (t.shape[-1],), w[f"{q}.{name}.weight"], w[f"{q}.{name}.bias"], 1e-5)

        n1 = ln(x, "norm1")
        x = attention(n1, n1, w, q + ".attn1", heads) + x
        x = attention(ln(x, "norm2"), ctx, w, q + ".attn2", heads) + x
        a, gate = lin(ln(x, "norm3"), w, q + ".ff.net.0.proj").chunk(2, dim=-1)
        x = lin(a * F.gelu(gate), w, q + ".ff.net.2") + x
    if linear:
        x = lin(x, w, p + ".proj_out")
    x = x.reshape(b, hh, ww, -1).permute(0, 3, 1, 2)
    if not linear:
        x = conv(x, w, p + ".proj_out", padding=0)
    return x + x_in


def unet(ckpt, x, t, ctx, heads=8):
    """SD1 UNet: x [B, in_channels, h, w] (the 9 inpaint channels already concatenated), float timesteps t [B]."""
    w = sub(ckpt, "model.diffusion_model.")
    mc = w["time_embed.0.weight"].shape[1]
    half = mc // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = lin(F.silu(lin(torch.cat([torch.cos(args), torch.sin(args)], -1), w, "time_embed.0")), w, "time_embed.2")

    def block(h, p):
        for j in range(count(w, p + ".")):
            q = f"{p}.{j}"
            if q + ".in_layers.0.weight" in w:
                h = res_block(h, emb, w, q)
            elif q + ".op.weight" in w:
                h = conv(h, w, q + ".op", stride=2, padding=1)
            elif q + ".proj_in.weight" in w:
                h = spatial_transformer(h, ctx, w, q, heads)
            elif q + ".conv.weight" in w:
                h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), w, q + ".conv")
            else:
                raise ValueError("unknown module " + q)
        return h

    h = conv(x, w, "input_blocks.0.0")
    skips = [h]
    for i in range(1, count(w, "input_blocks.")):
        h = block(h, f"input_blocks.{i}")
        skips.append(h)
    h = block(h, "middle_block")
    for i in range(count(w, "output_blocks.")):
        h = block(torch.cat([h, skips.pop()], 1), f"output_blocks.{i}")
    return conv(F.silu(gn(h, w, "out.0", 1e-5)), w, "out.2")


def vae_res(x, w, p):
    h = conv(F.silu(gn(x, w, p + ".norm1", 1e-6)), w, p + ".conv1")
    h = conv(F.silu(gn(h, w, p + ".norm2", 1e-6)), w, p + ".conv2")
    if p + ".nin_shortcut.weight" in w:
        x = conv(x, w, p + ".nin_shortcut", padding=0)
    return x + h


def vae_attn(x, w, p):
    h = gn(x, w, p + ".norm", 1e-6)
    q, k, v = (conv(h, w, f"{p}.{n}", padding=0) for n in "qkv")
    b, c, hh, ww = q.shape
    q = q.reshape(b, c, hh * ww).permute(0, 2, 1)
    a = torch.softmax(q @ k.reshape(b, c, hh * ww) * c ** -0.5, dim=-1)
    h = (v.reshape(b, c, hh * ww) @ a.transpose(1, 2)).reshape(b, c, hh, ww)
    return x + conv(h, w, p + ".proj_out", padding=0)


def vae_mid(h, w, p):
    return vae_res(vae_attn(vae_res(h, w, p + ".block_1"), w, p + ".attn_1"), w, p + ".block_2")


def vae_encode_mean(ckpt, image):
    """image [B, 3, H, W] in [-1, 1] -> the posterior mean (unscaled)."""
    w = sub(ckpt, "first_stage_model.")
    levels, blocks = count(w, "encoder.down."), count(w, "encoder.down.0.block.")
    h = conv(image, w, "encoder.conv_in")
    for level in range(levels):
        for b in range(blocks):
            h = vae_res(h, w, f"encoder.down.{level}.block.{b}")
        if level != levels - 1:
            h = conv(F.pad(h, (0, 1, 0, 1)), w, f"encoder.down.{level}.downsample.conv", stride=2, padding=0)
    h = vae_mid(h, w, "encoder.mid")
    h = conv(F.silu(gn(h, w, "encoder.norm_out", 1e-6)), w, "encoder.conv_out")
    moments = conv(h, w, "quant_conv", padding=0)
    return moments[:, : moments.shape[1] // 2]


def vae_decode(ckpt, z):
    """z = latent / scaling_factor -> image [B, 3, H, W] in [-1, 1], unclamped."""
    w = sub(ckpt, "first_stage_model.")
    levels, blocks = count(w, "decoder.up."), count(w, "decoder.up.0.block.")
    h = conv(conv(z, w, "post_quant_conv", padding=0), w, "decoder.conv_in")
    h = vae_mid(h, w, "decoder.mid")
    for level in reversed(range(levels)):
        for b in range(blocks):
            h = vae_res(h, w, f"decoder.up.{level}.block.{b}")
        if level != 0:
            h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), w, f"decoder.up.{level}.upsample.conv")
    return conv(F.silu(gn(h, w, "decoder.norm_out", 1e-6)), w, "decoder.conv_out")


def rel_err(a, b):
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


# ---- 1. the torch networks against the diffusers fixtures ----
report = {"checks": {}}
sd1 = load(f"{DIR}/sd1_tiny.safetensors")
cases = load(f"{DIR}/sd1_tiny_cases.safetensors")
report["checks"]["unet_vs_diffusers"] = rel_err(
    unet(sd1, cases["unet/x"], cases["unet/t"], cases["unet/context"]), cases["unet/out"])
report["checks"]["vae_encode_vs_diffusers"] = rel_err(vae_encode_mean(sd1, cases["vae/image"]), cases["vae/encoded_mean"])
report["checks"]["vae_decode_vs_diffusers"] = rel_err(vae_decode(sd1, cases["vae/z"]), cases["vae/decoded"])
del sd1

# ---- 2. InpaintModelConditioning (ComfyUI's code) on the 9-channel checkpoint ----
CKPT = f"{DIR}/tiny-sd1-inpaint.safetensors"
report["checkpoint_sha256"] = hashlib.sha256(open(CKPT, "rb").read()).hexdigest()
ckpt = load(CKPT)
inp = load(f"{DIR}/inputs.safetensors")
SCALE = 0.18215  # SD1 latent scaling factor (process_latent_in / out)
out = {}


def vae_encode(pixels):
    """ComfyUI's VAE.encode: crop to multiples of 8 (centred), [B, H, W, C] in [0, 1] -> 2x - 1, the encoder."""
    px = C.vae_encode_crop_pixels(pixels)
    return vae_encode_mean(ckpt, px.movedim(-1, 1) * 2.0 - 1.0)


pos = [[inp["context_pos"], {}]]
neg = [[inp["context_neg"], {}]]
pos_c, neg_c, latent, masked_pixels = C.inpaint_model_conditioning(pos, neg, inp["pixels"], vae_encode, inp["mask"], True)
out["imc/masked_pixels"] = masked_pixels
out["imc/mask"] = latent["noise_mask"]
out["imc/concat_latent"] = pos_c[0][1]["concat_latent_image"]
out["imc/samples"] = latent["samples"]

# ---- 3. the UNet's concat channels (concat_cond) and one UNet evaluation ----
ms = C.ModelSamplingDiscreteEPS()
x = inp["unet_x"]
sigma = torch.tensor([2.5])
concat_keys = ("mask", "masked_image")
process_in = lambda t: t * SCALE  # noqa: E731
# a) from the conditioning (InpaintModelConditioning)
cc_a = C.concat_cond(concat_keys, process_in, noise=x, device="cpu", concat_latent_image=out["imc/concat_latent"],
                     concat_mask=out["imc/mask"], latent_image=latent["samples"] * SCALE)
# b) nothing given (a plain latent on an inpaint model): ComfyUI's defaults
cc_b = C.concat_cond(concat_keys, process_in, noise=x, device="cpu", latent_image=torch.zeros_like(x))
# c) the latent's noise mask (prepared as the sampler does) and the latent itself (VAEEncodeForInpaint's way)
dm = C.prepare_mask(out["imc/mask"], x.shape, "cpu")
cc_c = C.concat_cond(concat_keys, process_in, noise=x, device="cpu", denoise_mask=dm, latent_image=latent["samples"] * SCALE)
for name, cc in [("cond", cc_a), ("default", cc_b), ("noise_mask", cc_c)]:
    out[f"unet/c_concat_{name}"] = cc
xc = ms.calculate_input(sigma, x)
t = ms.timestep(sigma).float()
out["unet/t"] = t
out["unet/eps_cond"] = unet(ckpt, torch.cat([xc, cc_a], 1), t, inp["context_pos"])
out["unet/eps_default"] = unet(ckpt, torch.cat([xc, cc_b], 1), t, inp["context_pos"])

# ---- 4. KSampler (euler, normal) through InpaintModelConditioning ----
KS = {"seed": 7, "steps": 4, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}


def ksampler(latent_dict, conds_pos, conds_neg, concat_from_cond):
    samples = latent_dict["samples"]
    noise = C.prepare_noise(samples, KS["seed"])
    sigmas = C.normal_scheduler(ms, KS["steps"])
    latent_image = samples * SCALE
    denoise_mask = None
    if "noise_mask" in latent_dict:
        denoise_mask = C.prepare_mask(latent_dict["noise_mask"], noise.shape, "cpu")

    def concat_for(conds):
        d = conds[0][1]
        kw = dict(noise=noise, device="cpu", latent_image=latent_image, denoise_mask=denoise_mask)
        if concat_from_cond:
            kw.update(concat_latent_image=d["concat_latent_image"], concat_mask=d["concat_mask"])
        return C.concat_cond(concat_keys, process_in, **kw)

    cc_pos, cc_neg = concat_for(conds_pos), concat_for(conds_neg)
    ctx_pos, ctx_neg = conds_pos[0][0], conds_neg[0][0]

    def denoiser(xx, s):
        xin = ms.calculate_input(s, xx)
        tt = ms.timestep(s).float()
        eps = unet(ckpt, torch.cat([torch.cat([xin, cc_pos], 1), torch.cat([xin, cc_neg], 1)]),
                   torch.cat([tt, tt]), torch.cat([ctx_pos, ctx_neg]))
        c, u = ms.calculate_denoised(s, eps[:1], xx), ms.calculate_denoised(s, eps[1:], xx)
        return C.cfg_function(c, u, KS["cfg"])

    k = C.KSamplerX0Inpaint(denoiser, ms)
    k.latent_image = latent_image
    k.noise = noise
    max_denoise = math.isclose(float(ms.sigma_max), float(sigmas[0]), rel_tol=1e-05) or float(sigmas[0]) > float(ms.sigma_max)
    x0 = ms.noise_scaling(sigmas[0], noise, latent_image, max_denoise)
    res = C.sample_euler(lambda xx, s: k(xx, s, denoise_mask), x0, sigmas)
    return res / SCALE, sigmas


final, sigmas = ksampler(latent, pos_c, neg_c, True)
out["ks/sigmas"] = sigmas
out["ks/latent"] = final
out["ks/image"] = vae_decode(ckpt, final)
# noise_mask = false: the latent has no noise mask, the conditioning still carries the concat
final_nm, _ = ksampler({"samples": latent["samples"]}, pos_c, neg_c, True)
out["ks_no_noise_mask/latent"] = final_nm
out["ks_no_noise_mask/image"] = vae_decode(ckpt, final_nm)

report["ksampler"] = KS
report["unet_sigma"] = 2.5
report["scale"] = SCALE
save(out, f"{OUT}/reference.safetensors")
with open(f"{OUT}/reference.json", "w") as fh:
    json.dump(report, fh, indent=1)
print(json.dumps(report, indent=1))
