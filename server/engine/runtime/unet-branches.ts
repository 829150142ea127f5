/**
 * The UNet calls of one sampling loop inside the worker, for its conditioning branches (positive, and negative for
 * CFG). Conditioning goes to the provider once. Where loops keep latents on the host (cpu, cuda: latentsOnHost), the
 * branches run as ONE batched UNet call ([x; x] against [ctx+; ctx-]) and eps comes back per branch as views of
 * the one output; on webgpu each branch runs alone and its eps stays in a GPU buffer (the TCD step graph reads it).
 * Branches whose conditioning shapes differ (e.g. 77 vs 154 tokens) run one call each everywhere.
 * Example (worker):
 *   const unet = await UNetBranches.open(store, model, [positive, negative]);
 *   const [pos, neg] = await unet.eps(x, 999);     // ort.Tensors: CPU tensors, or GPU buffers on webgpu
 *   const [p, n] = await unet.epsHost(x, 999);     // Float32Arrays on every provider
 *   await unet.close();
 */
import ort from 'onnxruntime-node';
import { toOrtFeeds } from '../onnx/session.js';
import type { Tensor } from '../tensor.js';
import { unetSession } from './components.js';
import { ControlResiduals } from './control-residuals.js';
import { deviceTensors } from './device-tensors.js';
import type { CondBranch } from './protocol.js';
import type { ModelRef } from '../types.js';
import { concatChannels, type ModelConfig } from '../model/config.js';
import { latentsOnHost } from './providers.js';
import type { SessionStore } from './session-store.js';

/** Concatenates tensors of equal trailing shape on the batch axis. */
export function concatBatch(parts: readonly Tensor[]): Tensor {
  const tail = parts[0].shape.slice(1);
  const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  let off = 0;
  for (const p of parts) {
    data.set(p.data, off);
    off += p.data.length;
  }
  return { shape: [parts.reduce((n, p) => n + p.shape[0], 0), ...tail], data };
}

const sameShape = (a: Tensor, b: Tensor) =>
  a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);

/** Whether branches can share one batched UNet call: same context (and SDXL extras, inpaint concat) shapes. */
export function batchable(branches: readonly CondBranch[]): boolean {
  if (branches.length < 2) return false;
  const [a] = branches;
  return branches.every(
    (b) =>
      sameShape(b.context, a.context) &&
      !!b.concat === !!a.concat &&
      (!b.concat || sameShape(b.concat, a.concat!)) &&
      !!b.extra === !!a.extra &&
      (!b.extra ||
        (sameShape(b.extra.textEmbeds, a.extra!.textEmbeds) && sameShape(b.extra.timeIds, a.extra!.timeIds))),
  );
}

function condFeeds(b: CondBranch, adm: boolean): Record<string, Tensor> {
  const f: Record<string, Tensor> = { context: b.context };
  if (adm && b.extra) {
    f.text_embeds = b.extra.textEmbeds;
    f.time_ids = b.extra.timeIds;
  }
  if (b.concat) f.c_concat = b.concat;
  return f;
}

/** An inpainting UNet needs every branch's concat channels; a plain one takes none (ComfyUI drops them there). */
export function checkConcat(config: ModelConfig, branches: readonly CondBranch[]): CondBranch[] {
  const n = concatChannels(config.unet);
  if (n === 0) return branches.map(({ concat: _, ...b }) => b);
  for (const b of branches)
    if (!b.concat || b.concat.shape[1] !== n)
      throw new Error(
        `the ${config.family} inpainting unet needs ${n} concat channels (mask + masked image latent) on every branch`,
      );
  return [...branches];
}

export class UNetBranches {
  private constructor(
    private store: SessionStore,
    private session: ort.InferenceSession,
    private weights: Record<string, ort.Tensor>,
    /** one feed set per UNet call: all branches batched (length 1), or one per branch */
    private conds: Record<string, ort.Tensor>[],
    private batched: boolean,
    private branchCount: number,
    private owned: ort.Tensor[],
    /** ControlNet residuals when any branch has ControlNets (the UNet is then its controlled variant) */
    private control: ControlResiduals | null = null,
  ) {}

  /**
   * Loads the UNet (LoRAs baked or fed) and puts the conditioning where it runs. Branches with ControlNets need
   * `percentToSigma` (the model sampling's, for their start/end ranges) and the sigma of every eps call.
   */
  static async open(
    store: SessionStore,
    model: ModelRef,
    branches: readonly CondBranch[],
    percentToSigma?: (p: number) => number,
  ): Promise<UNetBranches> {
    const { config } = store.checkpoint(model.checkpoint);
    const adm = !!config.unet.adm;
    if (adm && branches.some((b) => !b.extra))
      throw new Error(`the ${config.family} unet needs textEmbeds (pooled) and timeIds`);
    branches = checkConcat(config, branches);
    const controlled = branches.some((b) => b.control?.length);
    if (controlled && !percentToSigma) throw new Error('ControlNet is not supported by this sampling loop');
    const { session, weightFeeds } = await unetSession(store, model, { control: controlled });
    const control = controlled ? await ControlResiduals.open(store, model, branches, percentToSigma!) : null;
    const dev = deviceTensors(store);
    const owned: ort.Tensor[] = [];
    const up = async (t: Tensor) => {
      const d = await dev.upload(t);
      owned.push(d);
      return d;
    };
    const batched = latentsOnHost(store.ep) && batchable(branches);
    const groups = batched
      ? [
          condFeeds(
            {
              context: concatBatch(branches.map((b) => b.context)),
              ...(branches[0].concat ? { concat: concatBatch(branches.map((b) => b.concat!)) } : {}),
              ...(adm
                ? {
                    extra: {
                      textEmbeds: concatBatch(branches.map((b) => b.extra!.textEmbeds)),
                      timeIds: concatBatch(branches.map((b) => b.extra!.timeIds)),
                    },
                  }
                : {}),
            },
            adm,
          ),
        ]
      : branches.map((b) => condFeeds(b, adm));
    const conds: Record<string, ort.Tensor>[] = [];
    for (const g of groups) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const [k, v] of Object.entries(g)) feeds[k] = await up(v);
      conds.push(feeds);
    }
    return new UNetBranches(store, session, toOrtFeeds(weightFeeds), conds, batched, branches.length, owned, control);
  }

  /**
   * eps of every branch for the UNet input x (already scaled for the model) at timestep t. `x` may be a device
   * tensor (webgpu loops) or host data. The caller disposes GPU-buffer results (webgpu); host results are views.
   */
  async eps(x: Tensor | ort.Tensor, t: number | ort.Tensor, sigma?: number): Promise<ort.Tensor[]> {
    // host data: an engine Tensor (it has shape), or an ort CPU tensor (dims); else a GPU buffer (webgpu loops)
    const host = !('dims' in x)
      ? x
      : x.location === 'cpu'
        ? { shape: [...x.dims], data: x.data as Float32Array }
        : null;
    const batch = host ? host.shape[0] : (x as ort.Tensor).dims[0];
    if (this.control && (!host || typeof t !== 'number' || sigma === undefined))
      throw new Error('a UNet call with ControlNets takes a host latent, a timestep number and the sigma');
    let residuals: Record<string, Tensor>[] | null = null;
    if (this.control) {
      residuals = [];
      for (let b = 0; b < this.branchCount; b++)
        residuals.push(await this.control.residuals(b, host!, t as number, sigma!));
    }
    if (this.batched) {
      if (!host || typeof t !== 'number')
        throw new Error('a batched UNet call takes a host latent and a timestep number');
      const xs = concatBatch(Array.from({ length: this.branchCount }, () => host));
      const tFeed =
        typeof t === 'number' ? new ort.Tensor('float32', new Float32Array(xs.shape[0]).fill(t), [xs.shape[0]]) : t;
      const ctl: Record<string, Tensor> = {};
      if (residuals)
        for (const name of Object.keys(residuals[0])) ctl[name] = concatBatch(residuals.map((r) => r[name]));
      const feeds = { x: new ort.Tensor('float32', xs.data, xs.shape), t: tFeed, ...this.conds[0], ...toOrtFeeds(ctl) };
      const out = (await this.run(feeds)).data as Float32Array;
      const per = host.data.length;
      return Array.from(
        { length: this.branchCount },
        (_, k) => new ort.Tensor('float32', out.subarray(k * per, (k + 1) * per), host.shape),
      );
    }
    const xFeed = host ? new ort.Tensor('float32', host.data, host.shape) : (x as ort.Tensor);
    const tFeed = typeof t === 'number' ? new ort.Tensor('float32', new Float32Array(batch).fill(t), [batch]) : t;
    const eps: ort.Tensor[] = [];
    for (const [b, c] of this.conds.entries())
      eps.push(await this.run({ x: xFeed, t: tFeed, ...c, ...(residuals ? toOrtFeeds(residuals[b]) : {}) }));
    return eps;
  }

  /** eps of every branch as host arrays (downloaded from GPU buffers on webgpu). */
  async epsHost(x: Tensor, t: number, sigma?: number): Promise<Float32Array[]> {
    const dev = deviceTensors(this.store);
    const out: Float32Array[] = [];
    for (const e of await this.eps(x, t, sigma)) {
      try {
        out.push((await dev.download(e)).data);
      } finally {
        if (e.location === 'gpu-buffer') e.dispose();
      }
    }
    return out;
  }

  private async run(feeds: Record<string, ort.Tensor>): Promise<ort.Tensor> {
    const t0 = performance.now();
    const eps = (await this.session.run({ ...this.weights, ...feeds }, ['eps'])).eps;
    this.store.recordRun('unet', performance.now() - t0);
    return eps;
  }

  /** Frees the conditioning copies made on the provider. */
  close(): void {
    for (const d of this.owned) if (d.location === 'gpu-buffer') d.dispose();
    this.owned = [];
  }
}
