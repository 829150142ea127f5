// GET /history entries (ComfyUI's shape) reduced to what the history sidebar shows: images, prompt text, seed,
// time, status, and the UI workflow that made them. Framework-free and without I/O.
import type { ImageRef } from '../../protocol/images.js';
import type { ApiPrompt, Workflow } from './types.js';

/** One /history value: prompt = [number, prompt_id, api prompt, extra_data, outputs_to_execute]. */
export interface HistoryEntry {
  prompt: [number, string, ApiPrompt, Record<string, unknown>?, string[]?];
  outputs?: Record<string, { images?: ImageRef[] }>;
  status?: { status_str?: string; completed?: boolean; messages?: [string, Record<string, unknown>][] };
}

export interface HistoryItem {
  promptId: string;
  number: number;
  status: 'success' | 'error' | 'interrupted';
  /** ms since the epoch of the last event recorded, or null. */
  time: number | null;
  /** First text prompt of the graph (the positive one in the usual layouts). */
  text: string;
  seed: number | null;
  images: { nodeId: string; image: ImageRef }[];
  workflow: Workflow | null;
  prompt: ApiPrompt;
  extraData: Record<string, unknown>;
  /** The error text for failed prompts (a restart says so). */
  error: string | null;
}

const TEXT_CLASSES = /TextEncode/;

function firstText(prompt: ApiPrompt): string {
  const ids = Object.keys(prompt).sort((a, b) => Number(a) - Number(b));
  // The node feeding a sampler's `positive` input comes first when there is one.
  for (const n of Object.values(prompt)) {
    const pos = n.inputs?.positive;
    if (Array.isArray(pos) && typeof prompt[String(pos[0])]?.inputs?.text === 'string')
      return prompt[String(pos[0])].inputs.text as string;
  }
  for (const id of ids) {
    const n = prompt[id];
    if (TEXT_CLASSES.test(n.class_type) && typeof n.inputs.text === 'string') return n.inputs.text;
  }
  return '';
}

function seedOf(prompt: ApiPrompt): number | null {
  for (const n of Object.values(prompt)) {
    for (const k of ['seed', 'noise_seed']) if (typeof n.inputs?.[k] === 'number') return n.inputs[k] as number;
  }
  return null;
}

/**
 * One sidebar item per history entry, newest first.
 * @example historyItems(await (await fetch('/history')).json())[0].text // 'a red fox ...'
 */
export function historyItems(history: Record<string, HistoryEntry>): HistoryItem[] {
  const out: HistoryItem[] = [];
  for (const [promptId, e] of Object.entries(history)) {
    const [number, , prompt = {}, extra = {}] = e.prompt ?? [];
    const messages = e.status?.messages ?? [];
    const kinds = messages.map((m) => m[0]);
    const err = messages.find((m) => m[0] === 'execution_error')?.[1];
    const times = messages.map((m) => Number(m[1]?.timestamp)).filter((t) => Number.isFinite(t));
    const images: HistoryItem['images'] = [];
    for (const [nodeId, o] of Object.entries(e.outputs ?? {}))
      for (const image of o.images ?? []) images.push({ nodeId, image });
    const pnginfo = (extra as { extra_pnginfo?: { workflow?: Workflow } }).extra_pnginfo;
    out.push({
      promptId,
      number: Number(number) || 0,
      status: kinds.includes('execution_interrupted')
        ? 'interrupted'
        : e.status?.status_str === 'error' || err
          ? 'error'
          : 'success',
      time: times.length ? Math.max(...times) : null,
      text: firstText(prompt),
      seed: seedOf(prompt),
      images,
      workflow: pnginfo?.workflow && Array.isArray(pnginfo.workflow.nodes) ? pnginfo.workflow : null,
      prompt,
      extraData: extra as Record<string, unknown>,
      error: err ? String(err.exception_message ?? 'failed') : null,
    });
  }
  return out.sort((a, b) => b.number - a.number);
}
