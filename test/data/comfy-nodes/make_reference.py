"""
Reference outputs for tcd-studio's model-free nodes, made by ComfyUI's own code (comfy/utils.py common_upscale,
bislerp, lanczos and the node methods of nodes.py) run with torch on the CPU, float32.

Run on a machine with torch + Pillow + safetensors, with ComfyUI's excerpts importable (the ignored folder
.comfy-src/ holds comfy_subset.py, verbatim code from ComfyUI):
    python test/data/comfy-nodes/make_reference.py .comfy-src OUT_DIR
Writes OUT_DIR/reference.safetensors (inputs and outputs by key) and OUT_DIR/reference.json (the cases).
"""
import json
import sys

import struct

import torch
import PIL

try:
    from safetensors.torch import save_file
except ImportError:  # the format is simple enough to write by hand: u64 header length, JSON header, raw data
    def save_file(tensors, path):
        header, blobs, off = {}, [], 0
        for k, t in tensors.items():
            b = t.numpy().tobytes()
            header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
        h = json.dumps(header).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        with open(path, "wb") as fh:
            fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

sys.path.insert(0, sys.argv[1])
import comfy_subset as C  # noqa: E402

out_dir = sys.argv[2]
g = torch.Generator().manual_seed(1234)
tensors = {}
cases = []


def put(key, t):
    tensors[key] = t.detach().to(torch.float32).contiguous().clone()
    return key


def case(name, node, args, inputs, outputs):
    cases.append({"name": name, "node": node, "args": args, "inputs": inputs, "outputs": outputs})


lat = torch.randn(2, 4, 5, 7, generator=g)
lat_big = torch.randn(1, 4, 12, 10, generator=g)
lat3 = torch.randn(1, 4, 6, 6, generator=g)
img = torch.rand(2, 6, 9, 3, generator=g)
img2 = torch.rand(1, 4, 5, 3, generator=g)
img3 = torch.rand(1, 20, 24, 3, generator=g)
for k, v in {"lat": lat, "lat_big": lat_big, "lat3": lat3, "img": img, "img2": img2, "img3": img3}.items():
    put("in/" + k, v)

latent_methods = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
for m in latent_methods:
    for src, w, h, crop in [("lat", 96, 72, "disabled"), ("lat_big", 64, 72, "disabled"), ("lat", 128, 64, "center"),
                            ("lat", 0, 80, "disabled"), ("lat_big", 100, 0, "center")]:
        x = tensors["in/" + src]
        (s,) = C.LatentUpscale().upscale({"samples": x}, m, w, h, crop)
        key = put(f"LatentUpscale/{m}/{src}/{w}x{h}/{crop}", s["samples"])
        case(key, "LatentUpscale", {"upscale_method": m, "width": w, "height": h, "crop": crop}, {"samples": "in/" + src}, [key])
    for src, by in [("lat", 1.5), ("lat_big", 0.5), ("lat", 2.3)]:
        (s,) = C.LatentUpscaleBy().upscale({"samples": tensors["in/" + src]}, m, by)
        key = put(f"LatentUpscaleBy/{m}/{src}/{by}", s["samples"])
        case(key, "LatentUpscaleBy", {"upscale_method": m, "scale_by": by}, {"samples": "in/" + src}, [key])

image_methods = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
for m in image_methods:
    for w, h, crop in [(13, 10, "disabled"), (5, 4, "disabled"), (12, 6, "center"), (0, 8, "disabled"), (7, 9, "center")]:
        (s,) = C.ImageScale().upscale(img, m, w, h, crop)
        key = put(f"ImageScale/{m}/{w}x{h}/{crop}", s)
        case(key, "ImageScale", {"upscale_method": m, "width": w, "height": h, "crop": crop}, {"image": "in/img"}, [key])
    for by in [1.7, 0.6]:
        (s,) = C.ImageScaleBy().upscale(img, m, by)
        key = put(f"ImageScaleBy/{m}/{by}", s)
        case(key, "ImageScaleBy", {"upscale_method": m, "scale_by": by}, {"image": "in/img"}, [key])

for x, y, feather in [(48, 24, 16), (8, 8, 0), (0, 0, 24), (40, 56, 8)]:
    (s,) = C.LatentComposite().composite({"samples": lat_big}, {"samples": lat3}, x, y, feather=feather)
    key = put(f"LatentComposite/{x},{y},{feather}", s["samples"])
    case(key, "LatentComposite", {"x": x, "y": y, "feather": feather}, {"samples_to": "in/lat_big", "samples_from": "in/lat3"}, [key])

(s,) = C.LatentBlend().blend({"samples": lat}, {"samples": lat * 0.5 + 1}, 0.3)
put("in/lat_shifted", lat * 0.5 + 1)
key = put("LatentBlend/same", s["samples"])
case(key, "LatentBlend", {"blend_factor": 0.3}, {"samples1": "in/lat", "samples2": "in/lat_shifted"}, [key])
(s,) = C.LatentBlend().blend({"samples": lat_big}, {"samples": lat3}, 0.7)
key = put("LatentBlend/resized", s["samples"])
case(key, "LatentBlend", {"blend_factor": 0.7}, {"samples1": "in/lat_big", "samples2": "in/lat3"}, [key])

(s,) = C.ImageBatch().batch(img, img2)
key = put("ImageBatch/resized", s)
case(key, "ImageBatch", {}, {"image1": "in/img", "image2": "in/img2"}, [key])

(s,) = C.EmptyImage().generate(5, 3, 2, 0x12AB7F)
key = put("EmptyImage/0x12ab7f", s)
case(key, "EmptyImage", {"width": 5, "height": 3, "batch_size": 2, "color": 0x12AB7F}, {}, [key])

for pads in [(8, 0, 16, 8, 5), (8, 8, 8, 8, 40), (0, 16, 0, 0, 3)]:
    image, mask = C.ImagePadForOutpaint().expand_image(img3, *pads)
    k1 = put("ImagePadForOutpaint/%d,%d,%d,%d,%d/image" % pads, image)
    k2 = put("ImagePadForOutpaint/%d,%d,%d,%d,%d/mask" % pads, mask)
    case(k1, "ImagePadForOutpaint", dict(zip(["left", "top", "right", "bottom", "feathering"], pads)), {"image": "in/img3"}, [k1, k2])

to = put("in/cond_to", torch.randn(1, 6, 8, generator=g))
pooled_to = put("in/pooled_to", torch.randn(1, 3, generator=g))
for name, n in [("short", 4), ("long", 9)]:
    put(f"in/cond_from_{name}", torch.randn(1, n, 8, generator=g))
put("in/pooled_from", torch.randn(1, 3, generator=g))
for name in ["short", "long"]:
    for with_pooled_to, strength in [(True, 0.35), (False, 0.8)]:
        to_entry = [tensors[to], {"pooled_output": tensors[pooled_to]} if with_pooled_to else {}]
        from_entry = [tensors[f"in/cond_from_{name}"], {"pooled_output": tensors["in/pooled_from"]}]
        (out,) = C.ConditioningAverage().addWeighted([to_entry], [from_entry], strength)
        base = f"ConditioningAverage/{name}/{with_pooled_to}/{strength}"
        k1 = put(base + "/context", out[0][0])
        k2 = put(base + "/pooled", out[0][1]["pooled_output"])
        case(base, "ConditioningAverage", {"conditioning_to_strength": strength, "pooled_to": with_pooled_to},
             {"to": to, "from": f"in/cond_from_{name}", "pooled_to": pooled_to, "pooled_from": "in/pooled_from"}, [k1, k2])

save_file(tensors, f"{out_dir}/reference.safetensors")
meta = {"torch": torch.__version__, "pillow": PIL.__version__, "device": "cpu", "dtype": "float32",
        "made_by": "test/data/comfy-nodes/make_reference.py with ComfyUI's comfy/utils.py + nodes.py code"}
with open(f"{out_dir}/reference.json", "w") as fh:
    json.dump({"meta": meta, "cases": cases}, fh, indent=1)
print(len(cases), "cases,", sum(t.numel() for t in tensors.values()), "values")
