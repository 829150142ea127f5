/**
 * ComfyUI's RebatchLatents (comfy_extras/nodes_rebatch.py): takes a list of latent batches (INPUT_IS_LIST) and
 * returns them regrouped into batches of at most batch_size, as a list (OUTPUT_IS_LIST), so each downstream node
 * runs once per new batch. Entries of another spatial size close the current batch; each item keeps its noise mask
 * row (a missing mask is all ones; a shorter mask batch is tiled) and its batch_index (the running position when
 * absent). Masks that come out all ones are dropped. ComfyUI's quirks are kept: a batch is only split once it holds
 * more than batch_size items, and closing a batch keeps its first batch_size items.
 */
import type { Tensor } from '../server/engine/tensor.js';
import { defineListNode, t } from './define.js';
import type { LatentValue } from './types.js';

interface Batch {
  samples: Tensor;
  mask: Tensor;
  inds: number[];
}

const rowsOf = (x: Tensor) => x.shape[0];
const rowSize = (x: Tensor) => x.shape.slice(1).reduce((a, b) => a * b, 1);

/** rows [a, b) (clamped like a Python slice) */
function rows(x: Tensor, a: number, b: number): Tensor {
  const n = rowSize(x),
    end = Math.min(b, rowsOf(x)),
    start = Math.min(a, end);
  return { shape: [end - start, ...x.shape.slice(1)], data: x.data.slice(start * n, end * n) };
}

function catRows(a: Tensor, b: Tensor, what: string): Tensor {
  if (a.shape.slice(1).join() !== b.shape.slice(1).join())
    throw new Error(`latents: ${what} of shapes [${a.shape}] and [${b.shape}] cannot join one batch`);
  const data = new Float32Array(a.data.length + b.data.length);
  data.set(a.data);
  data.set(b.data, a.data.length);
  return { shape: [rowsOf(a) + rowsOf(b), ...a.shape.slice(1)], data };
}

/** One list entry as a batch: its mask (ones at 8x the latent when absent, tiled to the batch) and indices. */
function entryBatch(l: LatentValue, offset: number): Batch {
  const [b, , h, w] = l.samples.shape;
  let mask: Tensor = l.noise_mask ?? { shape: [b, 1, h * 8, w * 8], data: new Float32Array(b * h * w * 64).fill(1) };
  if (mask.shape.length === 3) mask = { shape: [mask.shape[0], 1, ...mask.shape.slice(1)], data: mask.data };
  if (rowsOf(mask) < b) {
    const n = rowSize(mask),
      m = rowsOf(mask);
    const data = new Float32Array(b * n);
    for (let i = 0; i < b; i++) data.set(mask.data.subarray((i % m) * n, ((i % m) + 1) * n), i * n);
    mask = { shape: [b, ...mask.shape.slice(1)], data };
  }
  const inds = l.batch_index ? [...l.batch_index] : Array.from({ length: b }, (_, i) => i + offset);
  return { samples: l.samples, mask, inds };
}

const firstRows = (x: Batch, a: number, b: number): Batch => ({
  samples: rows(x.samples, a, b),
  mask: rows(x.mask, a, b),
  inds: x.inds.slice(a, b),
});

const asLatent = (x: Batch): LatentValue => ({ samples: x.samples, noise_mask: x.mask, batch_index: x.inds });

export function rebatchLatents(latents: readonly LatentValue[], batchSize: number): LatentValue[] {
  const out: LatentValue[] = [];
  let current: Batch | null = null;
  let processed = 0;
  for (const l of latents) {
    const next = entryBatch(l, processed);
    processed += next.inds.length;
    if (!current) current = next;
    else if (next.samples.shape.slice(2).join() !== current.samples.shape.slice(2).join()) {
      out.push(asLatent(firstRows(current, 0, batchSize)));
      current = next;
    } else {
      current = {
        samples: catRows(current.samples, next.samples, 'samples'),
        mask: catRows(current.mask, next.mask, 'noise masks'),
        inds: [...current.inds, ...next.inds],
      };
    }
    if (rowsOf(current.samples) > batchSize) {
      const full = Math.floor(rowsOf(current.samples) / batchSize);
      for (let i = 0; i < full; i++) out.push(asLatent(firstRows(current, i * batchSize, (i + 1) * batchSize)));
      const rest = full * batchSize;
      current = rest < rowsOf(current.samples) ? firstRows(current, rest, rowsOf(current.samples)) : null;
    }
  }
  if (current) out.push(asLatent(firstRows(current, 0, batchSize)));
  for (const o of out) {
    const m = o.noise_mask!;
    let sum = 0;
    for (let i = 0; i < m.data.length; i++) sum += m.data[i];
    if (sum / m.data.length === 1) delete o.noise_mask;
  }
  return out;
}

export const RebatchLatents = defineListNode({
  id: 'RebatchLatents',
  displayName: 'Rebatch Latents',
  category: 'latent/batch',
  module: 'comfy_extras.nodes_rebatch',
  description: 'Regroups a list of latent batches into batches of batch_size; later nodes run once per batch.',
  inputs: [t.socket('LATENT', 'latents'), t.int('batch_size', { default: 1, min: 1, max: 4096 })],
  outputs: [{ ...t.out('LATENT'), isList: true }],
  execute: ({ latents, batch_size }) => ({ outputs: [rebatchLatents(latents, batch_size[0])] }),
});
