/**
 * Writes a model, its text encoders and a VAE as one single-file checkpoint in the layout they were read from (SD1
 * ldm / SDXL sgm keys), with every merge and LoRA of the references applied (merge.ts patchedWeights), each tensor in
 * its stored dtype: what ComfyUI's CheckpointSave writes. The write is atomic (safetensors-writer.ts).
 * Example:
 *   await saveCheckpoint((p) => store.checkpoint(p), { model, clip, vae, path: '/out/x_00001_.safetensors',
 *     metadata: { prompt: '{}' }, markers: [] });
 */
import type { SafetensorsFile } from '../io/safetensors.js';
import { writeSafetensors, type TensorEntry } from '../io/safetensors-writer.js';
import type { WeightSource } from '../onnx/weights.js';
import type { Component, LoraRef, MergeRef, ModelRef } from '../types.js';
import type { ModelConfig } from './config.js';
import { patchedWeights } from './merge.js';

export interface CheckpointSaveSpec {
  model: ModelRef;
  clip: { checkpoint: string; loras: LoraRef[]; merges?: MergeRef[] };
  vae: { checkpoint: string };
  path: string;
  metadata: Record<string, string>;
  /** empty marker tensors ComfyUI adds from the model type ('v_pred', 'ztsnr') */
  markers: string[];
}

type Open = (path: string) => { file: SafetensorsFile; config: ModelConfig };

const FLOAT = new Set(['F32', 'F16', 'BF16']);
const VAE_PREFIX = 'first_stage_model.';

/** The first dotted segment of a prefix, with its dot: 'cond_stage_model.', 'conditioner.', 'model.' */
const root = (prefix: string) => prefix.slice(0, prefix.indexOf('.') + 1);

/** One tensor of a source file under a new name: float tensors through `weights` (patched), others as bytes. */
function entry(file: SafetensorsFile, key: string, name: string, weights: WeightSource | null): TensorEntry {
  const info = file.info(key);
  const shape = [...info.shape];
  if (weights && FLOAT.has(info.dtype))
    return { name, dtype: info.dtype as 'F32' | 'F16' | 'BF16', shape, data: () => weights.read(key) };
  return { name, dtype: info.dtype, shape, raw: () => file.readBytes(key) };
}

/** Every tensor the checkpoint gets, in UNet, text encoders, VAE order. */
export function checkpointEntries(open: Open, spec: CheckpointSaveSpec): TensorEntry[] {
  const out: TensorEntry[] = [];
  const m = open(spec.model.checkpoint);
  const mergesOf = (refs: readonly MergeRef[] | undefined) =>
    (refs ?? []).map((ref) => ({ ref, file: open(ref.path).file }));

  const unet = patchedWeights(m.file, m.config, 'unet', spec.model.loras, mergesOf(spec.model.merges));
  for (const k of m.file.keys()) if (k.startsWith(m.config.unet.prefix)) out.push(entry(m.file, k, k, unet));

  const c = open(spec.clip.checkpoint);
  const clipMerges = mergesOf(spec.clip.merges);
  const encoders = c.config.textEncoders.map((enc, i) => ({
    prefix: enc.prefix,
    weights: patchedWeights(c.file, c.config, `text_encoder_${i}` as Component, spec.clip.loras, clipMerges),
  }));
  const roots = new Set(encoders.map((e) => root(e.prefix)));
  for (const k of c.file.keys()) {
    if (![...roots].some((r) => k.startsWith(r))) continue;
    // keys beside an encoder's own prefix (e.g. a logit scale) are copied as they are
    out.push(entry(c.file, k, k, encoders.find((e) => k.startsWith(e.prefix))?.weights ?? null));
  }

  // a VAE from its own file (VAELoader) has no prefix there; in a checkpoint it lives under first_stage_model.
  const v = open(spec.vae.checkpoint);
  const vp = v.config.vae.prefix;
  const vaeParts = ['encoder.', 'decoder.', 'quant_conv.', 'post_quant_conv.'];
  for (const k of v.file.keys()) {
    if (!k.startsWith(vp) || !vaeParts.some((p) => k.slice(vp.length).startsWith(p))) continue;
    out.push(entry(v.file, k, VAE_PREFIX + k.slice(vp.length), null));
  }
  for (const name of spec.markers) out.push({ name, dtype: 'F32', shape: [0], data: () => new Float32Array(0) });
  return out;
}

/** Writes the checkpoint (temp file + rename); resolves to its size in bytes and its tensor count. */
export async function saveCheckpoint(
  open: Open,
  spec: CheckpointSaveSpec,
): Promise<{ bytes: number; tensors: number }> {
  const entries = checkpointEntries(open, spec);
  const bytes = await writeSafetensors(spec.path, entries, spec.metadata);
  return { bytes, tensors: entries.length };
}
