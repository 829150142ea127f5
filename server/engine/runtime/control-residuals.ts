/**
 * ControlNet residuals for the UNet calls of a sampling loop (worker side), as ComfyUI's ControlNet.get_control:
 * each applied ControlNet of a branch runs on that branch's own UNet inputs (x already scaled, the timestep, its
 * context and SDXL extras) with its hint resized to the input's size x 8 (nearest-exact, centre crop) and spread
 * over the batch (broadcast_image_to); its outputs times strength are summed over the branch's chain (later + earlier,
 * control_merge), skipping links whose start/end percent range excludes the step's sigma. A branch with nothing
 * active gets zeros (adding zero leaves the UNet's activations exactly as without control).
 * Example (worker):
 *   const c = await ControlResiduals.open(store, model, branches, (p) => ms.percentToSigma(p));
 *   const feeds = await c.residuals(0, xScaled, t, sigma); // { control_0: Tensor, ..., control_middle: Tensor }
 */
import type ort from 'onnxruntime-node';
import { SafetensorsFile } from '../io/safetensors.js';
import { buildControlNetGraph } from '../model/controlnet.js';
import {
  controlNetConfigFor,
  controlNetWeights,
  inspectControlNet,
  type ControlNetFileInfo,
} from '../model/controlnet-file.js';
import { controlResidualNames, unetSkipChannels } from '../model/unet.js';
import { runSession, type Feed } from '../onnx/session.js';
import { safetensorsWeights } from '../onnx/weights.js';
import { patchedWeights } from '../model/merge.js';
import { commonUpscale } from '../ops/resize.js';
import type { Tensor } from '../tensor.js';
import type { ModelRef } from '../types.js';
import { fileIdentity } from './graph-cache.js';
import type { CondBranch, ControlRef } from './protocol.js';
import type { SessionStore } from './session-store.js';

/** ControlNet files stay open while their graphs may be serialised (weights are read lazily). */
const files = new Map<string, { id: string; file: SafetensorsFile; info: ControlNetFileInfo }>();

export function openControlNet(path: string): { id: string; file: SafetensorsFile; info: ControlNetFileInfo } {
  const id = JSON.stringify(fileIdentity(path));
  const hit = files.get(path);
  if (hit && hit.id === id) return hit;
  hit?.file.close();
  const file = SafetensorsFile.open(path);
  try {
    const entry = { id, file, info: inspectControlNet(file) };
    files.set(path, entry);
    return entry;
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Closes the open ControlNet files (POST /free). */
export function closeControlNets(): void {
  for (const f of files.values()) f.file.close();
  files.clear();
}

/** The ControlNet's session for use with `model` (a diff ControlNet adds its base checkpoint's UNet weights). */
export async function controlNetSession(
  store: SessionStore,
  model: ModelRef,
  ref: ControlRef,
): Promise<ort.InferenceSession> {
  const { config } = store.checkpoint(model.checkpoint);
  const cn = openControlNet(ref.path);
  const cfg = controlNetConfigFor(cn.info, config);
  const diff = cn.info.diff && ref.diffBase ? ref.diffBase : null;
  // a diff ControlNet's graph depends on its base model's weights: file identities, LoRA strengths, merges
  const baseKey = diff && {
    checkpoint: fileIdentity(diff.checkpoint),
    loras: diff.loras.map((l) => ({ ...fileIdentity(l.path), strength: l.strength })),
    merges: (diff.merges ?? []).map((m) => ({ ...m, ...fileIdentity(m.path) })),
  };
  const variant = `controlnet:${cn.id}${baseKey ? `+diff:${JSON.stringify(baseKey)}` : ''}`;
  return store.session({
    checkpoint: model.checkpoint,
    component: 'controlnet',
    loras: [],
    variant,
    build: (_w, _c, dtype) => {
      // ComfyUI adds the model's state dict as loaded: with its LoRAs and merges patched in
      const base = diff ? store.checkpoint(diff.checkpoint) : null;
      const merges = (diff?.merges ?? []).map((ref) => ({ ref, file: store.checkpoint(ref.path).file }));
      const src = base && patchedWeights(base.file, base.config, 'unet', diff!.loras, merges);
      const prefix = base?.config.unet.prefix ?? '';
      const diffBase = src
        ? (name: string) => (base!.file.has(prefix + name) ? src.read(prefix + name) : undefined)
        : undefined;
      const half = (k: string) => cn.file.info(k).dtype === 'F16';
      const weights = controlNetWeights(safetensorsWeights(cn.file), cn.info, diffBase, half);
      return buildControlNetGraph(cfg, weights, { dtype, ...store.graphTuning });
    },
  });
}

/** The hint for an input of batch B and latent size h x w: resized to 8h x 8w, batch item j = hint[j % Bh]. */
export function hintFor(hint: Tensor, batch: number, h: number, w: number): Tensor {
  const r = commonUpscale(hint, w * 8, h * 8, 'nearest-exact', 'center');
  const bh = r.shape[0];
  if (bh === 1 || bh === batch) return r;
  const per = r.data.length / bh;
  const data = new Float32Array(per * batch);
  for (let j = 0; j < batch; j++) data.set(r.data.subarray((j % bh) * per, ((j % bh) + 1) * per), j * per);
  return { shape: [batch, ...r.shape.slice(1)], data };
}

/** ComfyUI turns on global average pooling for files named *_shuffle / *_shuffle_fp16 (the shuffle ControlNet). */
export function globalAveragePooling(path: string): boolean {
  const stem = (path.split(/[\\/]/).pop() ?? path).replace(/\.[^.]*$/, '');
  return stem.endsWith('_shuffle') || stem.endsWith('_shuffle_fp16');
}

/** [B, C, H, W] -> every value replaced by its (b, c) plane's mean (torch.mean over dims 2, 3, float32) */
function spatialMean(t: Tensor): Float32Array {
  const [b, c, h, w] = t.shape;
  const n = h * w,
    out = new Float32Array(t.data.length);
  for (let p = 0; p < b * c; p++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += t.data[p * n + i];
    out.fill(Math.fround(sum / n), p * n, (p + 1) * n);
  }
  return out;
}

interface Link {
  ref: ControlRef;
  session: ort.InferenceSession;
  /** sigma range where it applies: sigma <= from and sigma >= to */
  from: number;
  to: number;
  hints: Map<string, Tensor>;
}

export class ControlResiduals {
  private constructor(
    private store: SessionStore,
    private branches: readonly CondBranch[],
    private chains: Link[][],
    private names: string[],
    private adm: boolean,
    private channels: number[],
    private levelsOf: number[],
  ) {}

  static async open(
    store: SessionStore,
    model: ModelRef,
    branches: readonly CondBranch[],
    percentToSigma: (p: number) => number,
  ): Promise<ControlResiduals> {
    const { config } = store.checkpoint(model.checkpoint);
    const chains: Link[][] = [];
    for (const b of branches) {
      const chain: Link[] = [];
      for (const ref of b.control ?? []) {
        chain.push({
          ref,
          session: await controlNetSession(store, model, ref),
          from: percentToSigma(ref.startPercent),
          to: percentToSigma(ref.endPercent),
          hints: new Map(),
        });
      }
      chains.push(chain);
    }
    const n = controlResidualNames(config.unet);
    const ch = unetSkipChannels(config.unet);
    const per = config.unet.numResBlocks + 1;
    const last = config.unet.channelMult.length - 1;
    return new ControlResiduals(
      store,
      branches,
      chains,
      [...n.skips, n.middle],
      !!config.unet.adm,
      [...ch.skips, ch.middle],
      [...ch.skips.map((_, i) => Math.floor(i / per)), last],
    );
  }

  /** Residual feeds of branch `b` for its UNet input x [B, C, h, w] (already scaled) at timestep t and sigma. */
  async residuals(b: number, x: Tensor, t: number, sigma: number): Promise<Record<string, Tensor>> {
    const [B, , h, w] = x.shape;
    const branch = this.branches[b];
    let acc: Record<string, Float32Array> | null = null;
    for (const link of this.chains[b]) {
      if (sigma > link.from || sigma < link.to) continue; // get_control: outside its timestep range
      const key = `${B}:${h}x${w}`;
      let hint = link.hints.get(key);
      if (!hint) {
        hint = hintFor(link.ref.hint, B, h, w);
        link.hints.set(key, hint);
      }
      const feeds: Record<string, Feed> = {
        x,
        hint,
        t: { shape: [B], data: new Float32Array(B).fill(t) },
        context: branch.context,
      };
      if (this.adm && branch.extra) {
        feeds.text_embeds = branch.extra.textEmbeds;
        feeds.time_ids = branch.extra.timeIds;
      }
      const t0 = performance.now();
      const out = await runSession(link.session, feeds);
      this.store.recordRun('controlnet', performance.now() - t0);
      const s = link.ref.strength;
      const next: Record<string, Float32Array> = {};
      for (const name of this.names) {
        const o = globalAveragePooling(link.ref.path) ? spatialMean(out[name]) : out[name].data;
        const sum = new Float32Array(o.length);
        const prev: Float32Array | undefined = acc?.[name];
        // control_merge: this link's output x strength, plus what the earlier links gave
        for (let i = 0; i < o.length; i++) sum[i] = prev ? Math.fround(o[i] * s) + prev[i] : o[i] * s;
        next[name] = sum;
      }
      acc = next;
    }
    const res: Record<string, Tensor> = {};
    this.names.forEach((name, i) => {
      let hh = h,
        ww = w;
      for (let l = 0; l < this.levelsOf[i]; l++) {
        hh = Math.ceil(hh / 2);
        ww = Math.ceil(ww / 2);
      }
      const shape = [B, this.channels[i], hh, ww];
      res[name] = { shape, data: acc ? acc[name] : new Float32Array(B * this.channels[i] * hh * ww) };
    });
    return res;
  }
}
