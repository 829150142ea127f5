/**
 * Runs an API-format prompt through the real executor and the real nodes (engine in a worker thread), without
 * HTTP, with temp folders. `capture` adds a test-only output node, CaptureValue, that records whatever reaches it.
 * The models folder's checkpoints/ and loras/ are symlinks to the fixtures folder (never copies).
 */
import { mkdtempSync, mkdirSync, symlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRegistry } from '../../nodes/index.js';
import { defineNode, t } from '../../nodes/define.js';
import { makeServices } from '../../server/host.js';
import { Executor } from '../../server/executor/execute.js';
import { validatePrompt } from '../../server/executor/validate.js';
import { ModelFolders } from '../../server/storage/model-folders.js';
import type { ServerEvent } from '../../protocol/events.js';
import type { Prompt } from '../../server/executor/prompt.js';

export interface Harness {
  dirs: { root: string; models: string; output: string; input: string; temp: string; data: string };
  captured: Map<string, unknown>;
  executor: Executor<any>;
  /** runs a prompt; `signal` interrupts it, `onEvent` sees events live, previews are collected */
  run(
    prompt: Prompt,
    o?: {
      signal?: AbortSignal;
      onEvent?: (e: ServerEvent) => void;
      allowErrors?: boolean;
      extraData?: Record<string, unknown>;
    },
  ): Promise<{
    status: string;
    events: ServerEvent[];
    outputs: Record<string, Record<string, unknown>>;
    previews: Uint8Array[];
    executed: string[];
  }>;
  close(): Promise<void>;
}

export function makeHarness(
  modelSource?: string,
  opts: { previews?: boolean; previewMethod?: 'latent2rgb' | 'taesd'; nodes?: ReturnType<typeof defineNode>[] } = {},
): Harness {
  const root = mkdtempSync(join(tmpdir(), 'tcd-run-'));
  const dirs = {
    root,
    models: join(root, 'models'),
    output: join(root, 'output'),
    input: join(root, 'input'),
    temp: join(root, 'temp'),
    data: join(root, 'data'),
  };
  for (const d of [dirs.models, dirs.output, dirs.input, dirs.temp, dirs.data]) mkdirSync(d, { recursive: true });
  if (modelSource) {
    symlinkSync(modelSource, join(dirs.models, 'checkpoints'));
    symlinkSync(modelSource, join(dirs.models, 'loras'));
  }
  const captured = new Map<string, unknown>();
  const registry = createRegistry();
  for (const type of ['LATENT', 'IMAGE', 'CONDITIONING', 'MODEL', 'CLIP']) {
    const id = `Capture${type}`;
    registry.set(
      id,
      defineNode({
        id,
        category: 'testing',
        outputNode: true,
        inputs: [t.socket(type, 'value')],
        outputs: [],
        execute: ({ value }, ctx) => {
          captured.set(ctx.nodeId, value);
          return { outputs: [] };
        },
      }),
    );
  }
  // test-only sources (e.g. an IMAGE made of exact float values)
  for (const def of opts.nodes ?? []) registry.set(def.id, def);
  const services = makeServices(
    new ModelFolders(dirs.models),
    { output: dirs.output, input: dirs.input, temp: dirs.temp },
    { ep: 'cpu', dataDir: dirs.data, log: () => {} },
    !!opts.previews,
    opts.previewMethod,
  );
  const executor = new Executor(registry, services);
  let n = 0;
  return {
    dirs,
    captured,
    executor,
    async run(prompt, o = {}) {
      const v = validatePrompt(prompt, registry, services);
      if (!v.ok) throw new Error(`prompt invalid: ${JSON.stringify(v.body)}`);
      const events: ServerEvent[] = [];
      const previews: Uint8Array[] = [];
      const r = await executor.run(
        { promptId: `p${n++}`, prompt, extraData: o.extraData ?? {}, outputs: v.outputs, constants: v.constants },
        {
          emit: (e) => {
            events.push(e);
            o.onEvent?.(e);
          },
          preview: (img) => previews.push(img.bytes),
          signal: o.signal ?? new AbortController().signal,
        },
      );
      const err = events.find((e) => e.type === 'execution_error');
      if (err && !o.allowErrors) throw new Error(`execution_error: ${JSON.stringify(err.data).slice(0, 2000)}`);
      return { status: r.status, events, outputs: r.outputs, previews, executed: r.executed };
    },
    async close() {
      await services.engine().close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Pixel comparison with the fixtures' rule: within 2 levels on 99.9% of pixels, none off by more than 4. */
export function comparePixels(
  ours: Float32Array /* [B,H,W,3] in 0..1 */,
  refImage: Float32Array /* [B,3,H,W] in [-1,1] */,
  shape: number[],
) {
  const [b, , h, w] = shape;
  let over2 = 0,
    maxDiff = 0;
  for (let i = 0; i < b; i++)
    for (let c = 0; c < 3; c++)
      for (let p = 0; p < h * w; p++) {
        const ref = Math.min(1, Math.max(0, (refImage[(i * 3 + c) * h * w + p] + 1) / 2)) * 255;
        const got = Math.round(Math.min(1, Math.max(0, ours[(i * h * w + p) * 3 + c])) * 255);
        const d = Math.abs(got - ref);
        if (d > 2) over2++;
        maxDiff = Math.max(maxDiff, d);
      }
  return { fractionOver2: over2 / (b * 3 * h * w), maxDiff };
}
