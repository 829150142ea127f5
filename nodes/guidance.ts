/**
 * From node values to the sampler's model callback: batches the conditioning to the latent batch, adds SDXL's
 * pooled embedding and time ids [H, W, crop_top, crop_left, target_H, target_W] (pixels; from the latent size
 * unless the conditioning sets them) and applies classifier-free guidance on eps:
 * eps = eps_neg + cfg * (eps_pos - eps_neg); with cfg <= 1 only the positive branch runs.
 */
import type { CondBranch, Engine } from '../server/engine/engine.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { CondEntry, Conditioning, ModelValue } from './types.js';

export type EpsFn = (x: Float32Array, timestep: number) => Promise<Float32Array>;

function repeatBatch(t: Tensor, batch: number): Tensor {
  const per = t.data.length / t.shape[0];
  const data = new Float32Array(per * batch);
  for (let b = 0; b < batch; b++) data.set(t.data.subarray((b % t.shape[0]) * per, ((b % t.shape[0]) + 1) * per), b * per);
  return { shape: [batch, ...t.shape.slice(1)], data };
}

function firstEntry(cond: Conditioning, what: string): CondEntry {
  if (!Array.isArray(cond) || cond.length === 0) throw new Error(`${what} conditioning is empty`);
  return cond[0];
}

/** The UNet inputs of one conditioning branch at a latent shape [B, 4, h, w]: context (and SDXL's pooled + time ids). */
export function condBranch(model: ModelValue, cond: Conditioning, shape: number[], what: string): CondBranch {
  const e = firstEntry(cond, what);
  const [batch, , h, w] = shape;
  const context = repeatBatch(e.context, batch);
  let extra: { textEmbeds: Tensor; timeIds: Tensor } | undefined;
  if (model.config.unet.adm) {
    if (!e.pooled) throw new Error(`${what} conditioning has no pooled output, which this SDXL-family model needs (was it encoded with this checkpoint's CLIP?)`);
    const H = e.height ?? h * 8, W = e.width ?? w * 8;
    const ids = [H, W, e.cropH ?? 0, e.cropW ?? 0, e.targetHeight ?? h * 8, e.targetWidth ?? w * 8];
    const timeIds = new Float32Array(batch * 6);
    for (let b = 0; b < batch; b++) timeIds.set(ids, b * 6);
    extra = { textEmbeds: repeatBatch(e.pooled, batch), timeIds: { shape: [batch, 6], data: timeIds } };
  }
  return { context, ...(extra ? { extra } : {}) };
}

/** The UNet call for one conditioning branch at a given latent shape [B, 4, h, w]. */
export function branch(engine: Engine, model: ModelValue, cond: Conditioning, shape: number[], what: string): EpsFn {
  const { context, extra } = condBranch(model, cond, shape, what);
  const batch = shape[0];
  return (x, timestep) => engine.unet(model.ref, { shape, data: x }, new Float32Array(batch).fill(timestep), context, extra).then((r) => r.data);
}

/**
 * eps with classifier-free guidance. `positiveOnly` says when the negative branch is skipped: diffusers (TCD) skips
 * it for cfg <= 1, ComfyUI's KSampler only for cfg == 1.
 */
export function guidedEps(engine: Engine, model: ModelValue, positive: Conditioning, negative: Conditioning | undefined, cfg: number, shape: number[], positiveOnly = cfg <= 1): EpsFn {
  const pos = branch(engine, model, positive, shape, 'positive');
  if (positiveOnly || !negative) return pos;
  const neg = branch(engine, model, negative, shape, 'negative');
  return async (x, t) => {
    const [ep, en] = [await pos(x, t), await neg(x, t)];
    const out = new Float32Array(ep.length);
    for (let i = 0; i < out.length; i++) out[i] = en[i] + cfg * (ep[i] - en[i]);
    return out;
  };
}
