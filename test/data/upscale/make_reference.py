"""References for the upscale-model and TAESD tests, made with torch (float64, CPU) on the device machine.

Written from the published architecture facts (RRDBNet as spandrel loads it for ComfyUI; madebyollin's TAESD) and
ComfyUI's tiled_scale / ImageUpscaleWithModel / spandrel's call semantics (pad to the size requirement with
reflect-then-replicate, run, clamp to [0, 1], crop; tiles of 512 overlapping by 32, feathered blend).
Inputs come from make-inputs.ts. Run from the project root:
  python3 test/data/upscale/make_reference.py <dir with the models, inputs.safetensors and taesd/> <out dir>
Writes <out>/reference.safetensors (upscale outputs) and <out>/taesd_reference.safetensors.
"""
import itertools
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DT = {"F32": np.float32, "F16": np.float16}


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DT[v["dtype"]]).reshape(v["shape"])
        out[k] = torch.from_numpy(arr.astype(np.float64))
    return out


def write_st(path, tensors):
    header, off, blobs = {}, 0, []
    for k, t in tensors.items():
        b = t.detach().cpu().numpy().astype(np.float32).tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- RRDBNet -------------------------------------------------------------------------------------------------------
def layout_names(sd):
    pre = "params_ema." if all(k.startswith("params_ema.") for k in sd) else ""
    if pre + "model.0.weight" in sd:
        nb = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith(pre + "model.1.sub.") and ".RDB1.conv1.0.weight" in k)
        seq = 1 + max(int(k[len(pre):].split(".")[1]) for k in sd if k.startswith(pre + "model."))
        ups = (seq - 5) // 3
        return dict(first=pre + "model.0", dense=lambda b, r, c: f"{pre}model.1.sub.{b}.RDB{r}.conv{c}.0",
                    trunk=f"{pre}model.1.sub.{nb}", up=lambda k: f"{pre}model.{3 * k}",
                    hr=f"{pre}model.{3 * ups + 2}", last=f"{pre}model.{3 * ups + 4}", nb=nb, ups=ups)
    if pre + "body.0.rdb1.conv1.weight" in sd:
        nb = 1 + max(int(k.split(".")[-4]) for k in sd if ".rdb1.conv1.weight" in k)
        ups = sum(1 for k in sd if k.startswith(pre + "conv_up") and k.endswith(".weight"))
        return dict(first=pre + "conv_first", dense=lambda b, r, c: f"{pre}body.{b}.rdb{r}.conv{c}",
                    trunk=pre + "conv_body", up=lambda k: f"{pre}conv_up{k}", hr=pre + "conv_hr",
                    last=pre + "conv_last", nb=nb, ups=ups)
    nb = 1 + max(int(k.split(".")[-4]) for k in sd if ".RDB1.conv1.weight" in k)
    ups = sum(1 for k in sd if k.startswith(pre + "upconv") and k.endswith(".weight"))
    return dict(first=pre + "conv_first", dense=lambda b, r, c: f"{pre}RRDB_trunk.{b}.RDB{r}.conv{c}",
                trunk=pre + "trunk_conv", up=lambda k: f"{pre}upconv{k}", hr=pre + "HRconv",
                last=pre + "conv_last", nb=nb, ups=ups)


class Rrdb:
    def __init__(self, sd):
        self.sd, self.n = sd, layout_names(sd)
        cin = sd[self.n["first"] + ".weight"].shape[1]
        cout = sd[self.n["last"] + ".weight"].shape[0]
        self.shuffle = 2 if cin == 4 * cout else 4 if cin == 16 * cout else 1
        self.scale = 2 ** self.n["ups"] // self.shuffle

    def conv(self, name, x):
        return F.conv2d(x, self.sd[name + ".weight"], self.sd.get(name + ".bias"), padding=1)

    def net(self, x):
        lrelu = lambda t: F.leaky_relu(t, 0.2)
        n = self.n
        if self.shuffle > 1:
            x = F.pixel_unshuffle(x, self.shuffle)
        fea = self.conv(n["first"], x)
        t = fea
        for b in range(n["nb"]):
            h = t
            for r in (1, 2, 3):
                feats = [h]
                for c in (1, 2, 3, 4):
                    feats.append(lrelu(self.conv(n["dense"](b, r, c), torch.cat(feats, 1))))
                h = self.conv(n["dense"](b, r, 5), torch.cat(feats, 1)) * 0.2 + h
            t = h * 0.2 + t
        x = fea + self.conv(n["trunk"], t)
        for k in range(1, n["ups"] + 1):
            x = lrelu(self.conv(n["up"](k), F.interpolate(x, scale_factor=2, mode="nearest")))
        x = lrelu(self.conv(n["hr"], x))
        return self.conv(n["last"], x)

    def __call__(self, img):
        # spandrel's call: pad to at least 2 px and a multiple of 4 for unshuffle models (reflect as far as it can
        # reach, then replicate), run, clamp to [0, 1], crop back
        _, _, h, w = img.shape
        mult = 4 if self.shuffle > 1 else 1
        need = lambda s: math.ceil(max(2, s) / mult) * mult - s
        ph, pw = need(h), need(w)
        x = img
        if ph or pw:
            rw, rh = min(pw, w - 1), min(ph, h - 1)
            x = F.pad(x, (0, rw, 0, rh), mode="reflect")
            x = F.pad(x, (0, pw - rw, 0, ph - rh), mode="replicate")
        y = self.net(x).clamp(0, 1)
        return y[..., : h * self.scale, : w * self.scale]


def tiled_scale(samples, fn, tile, overlap, scale, out_channels=3):
    """ComfyUI's tiled_scale over (H, W), written from its behaviour."""
    B, _, H, W = samples.shape
    OH, OW = round(H * scale), round(W * scale)
    output = torch.empty((B, out_channels, OH, OW), dtype=samples.dtype)
    for b in range(B):
        s = samples[b:b + 1]
        if H <= tile and W <= tile:
            output[b:b + 1] = fn(s)
            continue
        out = torch.zeros((1, out_channels, OH, OW), dtype=samples.dtype)
        div = torch.zeros_like(out)
        pos = [range(0, n - overlap, tile - overlap) if n > tile else [0] for n in (H, W)]
        for it in itertools.product(*pos):
            sl, origin = s, []
            for d in range(2):
                p = max(0, min(s.shape[d + 2] - overlap, it[d]))
                ln = min(tile, s.shape[d + 2] - p)
                sl = sl.narrow(d + 2, p, ln)
                origin.append(round(p * scale))
            ps = fn(sl)
            mask = torch.ones_like(ps)
            for d in (2, 3):
                fe = round(overlap * scale)
                if fe >= mask.shape[d]:
                    continue
                for t in range(fe):
                    a = (t + 1) / fe
                    mask.narrow(d, t, 1).mul_(a)
                    mask.narrow(d, mask.shape[d] - 1 - t, 1).mul_(a)
            o = out.narrow(2, origin[0], mask.shape[2]).narrow(3, origin[1], mask.shape[3])
            od = div.narrow(2, origin[0], mask.shape[2]).narrow(3, origin[1], mask.shape[3])
            o.add_(ps * mask)
            od.add_(mask)
        output[b:b + 1] = out / div
    return output


def upscale_with_model(model, image_bchw):
    """ImageUpscaleWithModel: tiles of 512 overlapping by 32, then clamp."""
    return tiled_scale(image_bchw, model, 512, 32, model.scale).clamp(0, 1)


# ---- TAESD ---------------------------------------------------------------------------------------------------------
def taesd_block(sd, i, x):
    c = lambda j, t: F.conv2d(t, sd[f"{i}.conv.{j}.weight"], sd[f"{i}.conv.{j}.bias"], padding=1)
    h = c(4, F.relu(c(2, F.relu(c(0, x)))))
    skip = F.conv2d(x, sd[f"{i}.skip.weight"]) if f"{i}.skip.weight" in sd else x
    return F.relu(h + skip)


def taesd_decode(sd, z, scale, shift):
    x = (z - shift) * scale
    x = torch.tanh(x / 3) * 3
    x = F.relu(F.conv2d(x, sd["1.weight"], sd["1.bias"], padding=1))
    for i in range(3, 19):
        if i in (3, 4, 5, 8, 9, 10, 13, 14, 15, 18):
            x = taesd_block(sd, i, x)
        elif i in (7, 12, 17):
            x = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), sd[f"{i}.weight"], None, padding=1)
    x = F.conv2d(x, sd["19.weight"], sd["19.bias"], padding=1)
    return x * 2 - 1


def taesd_encode(sd, img, scale, shift):
    x = F.conv2d(img * 0.5 + 0.5, sd["0.weight"], sd["0.bias"], padding=1)
    for i in range(1, 14):
        if i in (1, 3, 4, 5, 7, 8, 9, 11, 12, 13):
            x = taesd_block(sd, i, x)
        elif i in (2, 6, 10):
            x = F.conv2d(x, sd[f"{i}.weight"], None, stride=2, padding=1)
    x = F.conv2d(x, sd["14.weight"], sd["14.bias"], padding=1)
    return x / scale + shift


def main(src, out):
    torch.set_grad_enabled(False)
    os.makedirs(out, exist_ok=True)
    inp = read_st(os.path.join(src, "inputs.safetensors"))
    m = {n: Rrdb(read_st(os.path.join(src, f"{n}.safetensors")))
         for n in ("esrgan-old-x4", "realesrgan-x2-unshuffle", "bsrgan-x2")}
    for n, mm in m.items():
        print(n, "scale", mm.scale, "shuffle", mm.shuffle, "blocks", mm.n["nb"], "ups", mm.n["ups"])
    ref = {
        "a_old_x4": m["esrgan-old-x4"](inp["img_a"]),
        "b_unshuffle_x2": m["realesrgan-x2-unshuffle"](inp["img_b"]),
        "c_node_tiled_x2": upscale_with_model(m["realesrgan-x2-unshuffle"], inp["img_c"]),
        "d_tiled16_x2": tiled_scale(inp["img_d"], m["bsrgan-x2"], 16, 4, 2),
        "e_node_x4": upscale_with_model(m["esrgan-old-x4"], inp["img_a"]),
    }
    for k, v in ref.items():
        print(k, list(v.shape), float(v.min()), float(v.max()), float(v.mean()))
    write_st(os.path.join(out, "reference.safetensors"), ref)

    tdir = os.path.join(src, "taesd")
    if os.path.isdir(tdir):
        ti = read_st(os.path.join(tdir, "taesd_inputs.safetensors"))
        enc = read_st(os.path.join(tdir, "taesd_encoder.safetensors"))
        dec = read_st(os.path.join(tdir, "taesd_decoder.safetensors"))
        tref = {
            "decoded_sd1": taesd_decode(dec, ti["latent"], 0.18215, 0.0),
            "decoded_sdxl": taesd_decode(dec, ti["latent"], 0.13025, 0.0),
            "encoded_sd1": taesd_encode(enc, ti["image"], 0.18215, 0.0),
        }
        for k, v in tref.items():
            print(k, list(v.shape), float(v.min()), float(v.max()), float(v.abs().mean()))
        write_st(os.path.join(out, "taesd_reference.safetensors"), tref)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
