/**
 * Worker-side meaning of each engine call: which component graphs it needs (and how they are built), what it
 * feeds them, and how outputs become the call's result. Runs inside the worker only.
 * Example (worker): const { context, pooled } = await runComponentCall(store, { op: 'encodeText', clip, text });
 */
import type { ModelConfig } from '../model/config.js';
import { patchedWeights } from '../model/merge.js';
import { fileIdentity } from './graph-cache.js';
import { buildTextEncoderGraph, encoderGraphOptions } from '../model/clip.js';
import { runSession, toOrtFeeds } from '../onnx/session.js';
import { deviceTensors } from './device-tensors.js';
import { checkConcat } from './unet-branches.js';
import type { Tensor } from '../tensor.js';
import { sessionWithLoras } from '../lora/session.js';
import { tokenizeWindows } from '../model/tokenizer.js';
import { buildUNetGraph } from '../model/unet.js';
import {
  type Hypernetwork,
  type HypernetworkSource,
  openHypernetworkSource,
  readHypernetwork,
} from '../model/hypernetwork.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { createHash } from 'node:crypto';
import { buildVaeDecoderGraph, buildVaeEncoderGraph, vaeStreamScale } from '../model/vae.js';
import { buildEsrganGraph, cropTopLeft, detectEsrgan, padForEsrgan } from '../model/esrgan.js';
import { safetensorsWeights } from '../onnx/weights.js';
import type { Component, ComputeDtype, LoraRef, MergeRef, ModelRef } from '../types.js';
import type { WeightSource } from '../onnx/weights.js';
import type { Call, ClipRef, EncodedText, TaesdRef } from './protocol.js';
import { buildTaesdDecoderGraph, buildTaesdEncoderGraph } from '../model/taesd.js';
import type { ComponentSpec, SessionStore } from './session-store.js';

export async function runComponentCall(store: SessionStore, call: Call): Promise<unknown> {
  switch (call.op) {
    case 'encodeText':
      return encodeText(store, call.clip, call.text);
    case 'unet': {
      const { session, weightFeeds } = await unetSession(store, call.model);
      const { config } = store.checkpoint(call.model.checkpoint);
      if (config.unet.adm && !call.extra)
        throw new Error(`the ${config.family} unet needs textEmbeds (pooled) and timeIds`);
      const feeds: Record<string, Tensor> = {
        ...weightFeeds,
        x: call.x,
        t: { shape: [call.t.length], data: call.t },
        context: call.context,
      };
      if (config.unet.adm && call.extra) {
        feeds.text_embeds = call.extra.textEmbeds;
        feeds.time_ids = call.extra.timeIds;
      }
      const [branch] = checkConcat(config, [
        { context: call.context, ...(call.concat ? { concat: call.concat } : {}) },
      ]);
      if (branch.concat) feeds.c_concat = branch.concat;
      const t0 = performance.now();
      const eps = (await session.run(toOrtFeeds(feeds), ['eps'])).eps;
      store.recordRun('unet', performance.now() - t0);
      // on GPU providers the UNet leaves eps in a GPU buffer (for the TCD loop); a single call brings it back
      const dev = deviceTensors(store);
      try {
        return await dev.download(eps);
      } finally {
        if (eps.location !== 'cpu') eps.dispose();
      }
    }
    case 'vaeDecode': {
      const taesd = call.vae.taesd;
      if (taesd) {
        const s = await taesdSession(store, taesd, 'decoder');
        return (await timedRun(store, 'vae_decoder', s, { latent: call.z })).image;
      }
      return runVae(store, call.vae.checkpoint, 'vae_decoder', { latent: call.z });
    }
    case 'vaeEncode': {
      const taesd = call.vae.taesd;
      if (taesd) {
        const s = await taesdSession(store, taesd, 'encoder');
        return (await timedRun(store, 'vae_encoder', s, { image: call.image })).mean;
      }
      return runVae(store, call.vae.checkpoint, 'vae_encoder', { image: call.image });
    }
    case 'upscaleImage':
      return upscaleImage(store, call.model.path, call.image);
    default:
      throw new Error(`not a component call: ${call.op}`);
  }
}

/** checkpoint + VAE half whose fp16 graph once gave a non-finite output: it runs in fp32 from then on */
const fp32Vaes = new Set<string>();

/**
 * A VAE half on the checkpoint. In fp16 (GPUs) a result that is not finite means an activation overflowed even at
 * the scaled residual stream (model/vae.ts FP16_STREAM_SCALE): it is computed again in fp32, and that checkpoint's
 * VAE half stays fp32 for the life of the worker (as A1111 does when its fp16 VAE gives NaNs).
 */
async function runVae(
  store: SessionStore,
  checkpoint: string,
  component: 'vae_decoder' | 'vae_encoder',
  feeds: Record<string, Tensor>,
): Promise<Tensor> {
  const build = component === 'vae_decoder' ? buildVaeDecoderGraph : buildVaeEncoderGraph;
  const output = component === 'vae_decoder' ? 'image' : 'mean';
  const spec = (dtype?: ComputeDtype): ComponentSpec => ({
    checkpoint,
    component,
    loras: [],
    ...(dtype ? { dtype } : {}),
    build: (w, cfg, d) =>
      build(cfg.vae, w, { dtype: d, streamScale: vaeStreamScale(cfg.family, d), ...store.graphTuning }),
  });
  const key = `${store.ep}:${component}:${checkpoint}`;
  const pinned = fp32Vaes.has(key);
  const run = async (dtype?: ComputeDtype) =>
    (await timedRun(store, component, await store.session(spec(dtype)), feeds))[output];
  const out = await run(pinned ? 'float32' : undefined);
  if (pinned || store.dtypeOf(component) === 'float32' || out.data.every(Number.isFinite)) return out;
  fp32Vaes.add(key);
  store.log(
    `engine: the fp16 ${component.replace('_', ' ')} of ${checkpoint} overflowed (non-finite output): ` +
      'computing it again in fp32, and in fp32 from now on',
  );
  return run('float32');
}

/** A TAESD half as a single-file network (its scale/shift are part of the graph). */
function taesdSession(store: SessionStore, t: TaesdRef, part: 'encoder' | 'decoder') {
  const scaling = { scale: t.scale, shift: t.shift };
  return store.fileModelSession({
    path: part === 'decoder' ? t.decoder : t.encoder,
    kind: `taesd_${part}`,
    variant: `${t.scale}/${t.shift}`,
    build: (w) => (part === 'decoder' ? buildTaesdDecoderGraph(w, scaling) : buildTaesdEncoderGraph(w, scaling)),
  });
}

/**
 * A sampler preview through a TAESD decoder, as ComfyUI's TAESD previewer: the first batch item of the model-space
 * latent, no scale or shift (TAESD decodes scaled latents), image [1, 3, H, W] in [-1, 1].
 */
export async function decodeTaesdPreview(store: SessionStore, decoder: string, latent: Tensor): Promise<Tensor> {
  const [, c, h, w] = latent.shape;
  const first = { shape: [1, c, h, w], data: latent.data.slice(0, c * h * w) };
  const s = await taesdSession(store, { encoder: decoder, decoder, scale: 1, shift: 0 }, 'decoder');
  return (await runSession(s, { latent: first })).image;
}

/** spandrel's call of an RRDBNet: pad to the sizes it takes, run (the graph clamps to [0, 1]), crop back. */
async function upscaleImage(store: SessionStore, path: string, image: Tensor): Promise<Tensor> {
  const cfg = detectEsrgan(safetensorsWeights(store.openFile(path)), store.openFile(path).keys());
  const session = await store.fileModelSession({ path, kind: 'upscale', build: (w) => buildEsrganGraph(cfg, w) });
  const [, , h, w] = image.shape;
  const t0 = performance.now();
  const out = (await runSession(session, { image: padForEsrgan(cfg, image) })).upscaled;
  store.recordRun('upscale', performance.now() - t0);
  return cropTopLeft(out, h * cfg.scale, w * cfg.scale);
}

/**
 * A component of a merged model or CLIP: its weights merged, and its LoRAs applied in node order around the merges,
 * when the graph is built (merge.ts patchedWeights).
 */
async function mergedSession(
  store: SessionStore,
  checkpoint: string,
  component: Component,
  loras: readonly LoraRef[],
  mergeRefs: readonly MergeRef[],
  variant: string,
  build: ComponentSpec['build'],
): ReturnType<typeof sessionWithLoras> {
  const { file, config } = store.checkpoint(checkpoint);
  const merges = mergeRefs.map((ref) => ({ ref, file: store.checkpoint(ref.path).file }));
  // the merge inputs' and LoRAs' identities make the graph key: a changed file, ratio or strength is a new graph
  const id = (p: string) => fileIdentity(p);
  const key = `${variant}+merge:${JSON.stringify({
    merges: mergeRefs.map((m) => ({ ...m, id: id(m.path) })),
    loras: loras.filter((l) => l.strength !== 0).map((l) => ({ ...l, id: id(l.path) })),
  })}`;
  const session = await store.session({
    checkpoint,
    component,
    loras: [],
    variant: key,
    build,
    weights: async () => patchedWeights(file, config, component, loras, merges),
  });
  return { session, weightFeeds: {} };
}

const digest = (v: unknown) => createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);

/** Open hypernetwork files, by path, reread when the file changes. */
const hypernetFiles = new Map<string, { source: HypernetworkSource; mtimeMs: number }>();
function hypernetworksOf(model: ModelRef): Hypernetwork[] {
  return (model.hypernetworks ?? []).map(({ path, strength }) => {
    const mtimeMs = fileIdentity(path).mtimeMs;
    let hit = hypernetFiles.get(path);
    if (!hit || hit.mtimeMs !== mtimeMs) {
      if (hit?.source instanceof SafetensorsFile) hit.source.close();
      hit = { source: openHypernetworkSource(path), mtimeMs };
      hypernetFiles.set(path, hit);
    }
    return readHypernetwork(hit.source, strength);
  });
}

/**
 * `control`: the variant with ControlNet residual inputs (built only when a ControlNet is in use); hypernetworks
 * make their own variant (keyed by file identity and strength), so graphs without them stay as they were.
 */
export async function unetSession(
  store: SessionStore,
  model: ModelRef,
  opts: { control?: boolean } = {},
): ReturnType<typeof sessionWithLoras> {
  const control = !!opts.control;
  const hn = model.hypernetworks ?? [];
  const variant = [
    control ? 'control' : '',
    hn.length ? `hypernetwork-${digest(hn.map((h) => ({ ...h, id: fileIdentity(h.path) })))}` : '',
  ]
    .filter(Boolean)
    .join('+');
  const build: ComponentSpec['build'] = (w, cfg, dtype) =>
    buildUNetGraph(cfg.unet, w, {
      dtype,
      ...store.graphTuning,
      ...(control ? { controlInputs: true } : {}),
      ...(hn.length ? { hypernetworks: hypernetworksOf(model) } : {}),
    });
  if (model.merges?.length)
    return mergedSession(store, model.checkpoint, 'unet', model.loras, model.merges, variant, build);
  return sessionWithLoras(store, {
    checkpoint: model.checkpoint,
    component: 'unet',
    loras: model.loras,
    ...(variant ? { variant } : {}),
    build,
  });
}

/** runSession, with its duration recorded in the store (stats().runTimings; the bench reads them). */
async function timedRun(
  store: SessionStore,
  component: Component,
  session: Parameters<typeof runSession>[0],
  feeds: Parameters<typeof runSession>[1],
) {
  const t0 = performance.now();
  const out = await runSession(session, feeds);
  store.recordRun(component, performance.now() - t0);
  return out;
}

/**
 * Encodes every 77-token window of the prompt with each text encoder (SDXL: CLIP-L then OpenCLIP-G, concatenated on
 * channels), concatenates windows on the sequence axis and takes pooled from the first window, as ComfyUI does.
 * Emphasis weights follow ComfyUI too: when any token weight differs from 1, an empty window [BOS, EOS, pad...] is
 * encoded alongside and each weighted token becomes empty + (token - empty) * weight.
 */
async function encodeText(store: SessionStore, clip: ClipRef, text: string): Promise<EncodedText> {
  const { config } = store.checkpoint(clip.checkpoint);
  const clipSkip = clip.clipSkip ?? config.defaultClipSkip;
  const parts: Tensor[] = [];
  let pooled: Tensor | null = null;
  for (let i = 0; i < config.textEncoders.length; i++) {
    const enc = config.textEncoders[i];
    const component: Component = `text_encoder_${i}`;
    const sel = encoderGraphOptions(config, i, clipSkip);
    const wantPooled = sel.pooled;
    const variant = `hidden-${sel.hiddenFromEnd}${sel.normHidden ? '-norm' : ''}${wantPooled ? '-pooled' : ''}`;
    const build = (w: WeightSource, _cfg: ModelConfig, dtype: ComputeDtype) =>
      buildTextEncoderGraph(enc, w, { dtype, ...sel });
    const { session, weightFeeds } = clip.merges?.length
      ? await mergedSession(store, clip.checkpoint, component, clip.loras, clip.merges, variant, build)
      : await sessionWithLoras(store, { checkpoint: clip.checkpoint, component, loras: clip.loras, variant, build });
    const { ids, weights } = tokenizeWindows(text, { padToken: enc.padToken });
    const weighted = weights.some((w) => w.some((x) => x !== 1));
    const windows = weighted ? [...ids, emptyWindow(enc.padToken, ids[0].length)] : ids;
    const batch = new Int32Array(windows.length * windows[0].length);
    windows.forEach((w, k) => batch.set(w, k * w.length));
    const out = await timedRun(store, component, session, {
      ...weightFeeds,
      ids: { shape: [windows.length, windows[0].length], ids: batch },
    });
    const hidden = out.hidden; // [windows (+1), 77, C]
    if (weighted) applyEmphasis(hidden, weights);
    parts.push(joinWindows(hidden, ids.length)); // [1, 77 * windows, C]
    if (wantPooled) pooled = { shape: [1, out.pooled.shape[1]], data: out.pooled.data.slice(0, out.pooled.shape[1]) };
  }
  return { context: concatChannels(parts), pooled };
}

function emptyWindow(pad: number, length: number): Int32Array {
  const w = new Int32Array(length).fill(pad);
  w[0] = 49406; // BOS
  w[1] = 49407; // EOS
  return w;
}

/** In place: token j of window k becomes empty[j] + (z - empty[j]) * weight; the empty window is the last row. */
function applyEmphasis(hidden: Tensor, weights: Float32Array[]): void {
  const [n, T, C] = hidden.shape;
  const empty = hidden.data.subarray((n - 1) * T * C, n * T * C);
  weights.forEach((w, k) => {
    for (let j = 0; j < T; j++) {
      if (w[j] === 1) continue;
      const row = hidden.data.subarray((k * T + j) * C, (k * T + j + 1) * C);
      for (let c = 0; c < C; c++) row[c] = empty[j * C + c] + (row[c] - empty[j * C + c]) * w[j];
    }
  });
}

/** [n, T, C] -> [1, count * T, C] using the first `count` windows (row-major makes this a prefix copy). */
function joinWindows(hidden: Tensor, count: number): Tensor {
  const [, T, C] = hidden.shape;
  return { shape: [1, count * T, C], data: hidden.data.slice(0, count * T * C) };
}

/** Concatenates [1, S, Ci] tensors on the channel axis -> [1, S, sum Ci]. */
function concatChannels(parts: Tensor[]): Tensor {
  if (parts.length === 1) return parts[0];
  const S = parts[0].shape[1];
  if (parts.some((p) => p.shape[1] !== S))
    throw new Error(`text encoders produced different lengths: ${parts.map((p) => p.shape[1]).join(' vs ')}`);
  const C = parts.reduce((a, p) => a + p.shape[2], 0);
  const out = new Float32Array(S * C);
  for (let s = 0; s < S; s++) {
    let off = s * C;
    for (const p of parts) {
      const c = p.shape[2];
      out.set(p.data.subarray(s * c, (s + 1) * c), off);
      off += c;
    }
  }
  return { shape: [1, S, C], data: out };
}
