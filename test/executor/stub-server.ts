/**
 * Small deterministic stub nodes and a real server (real port, websocket, SQLite) built on them, for executor and
 * protocol tests that must not wait for diffusion. Every execution is counted per node class in services.runs.
 * Example:
 *   const s = await startStubServer();
 *   ... POST s.url + '/prompt' ...
 *   await s.stop();
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer, type ServerConfig } from '../../server/app/server.js';
import type { NodeDefinition, Registry, InputSpec } from '../../server/executor/node-definition.js';
import { testNode } from './test-node.js';
import { encodePng } from '../../server/storage/png.js';
import { writeFileAtomic } from '../../server/storage/atomic-write.js';

export interface StubServices {
  runs: Map<string, number>;
  dirs: { output: string; input: string; temp: string };
  slowDelayMs: number;
}

const int = (name: string, o: Record<string, unknown> = {}): InputSpec => ({
  name,
  type: 'INT',
  options: { default: 0, min: 0, max: 1000, step: 1, ...o },
});
const socket = (type: string, name: string): InputSpec => ({ name, type, options: {} });

function def(
  d: Partial<NodeDefinition<StubServices>> &
    Pick<NodeDefinition<StubServices>, 'id' | 'inputs' | 'outputs' | 'execute'>,
): NodeDefinition<StubServices> {
  return testNode(d, (_args, ctx) => ctx.services.runs.set(d.id, (ctx.services.runs.get(d.id) ?? 0) + 1));
}

export function stubRegistry(): Registry<StubServices> {
  const nodes: NodeDefinition<StubServices>[] = [
    // a "loader": no inputs that change, a constant
    def({
      id: 'StubLoad',
      inputs: [int('value')],
      outputs: [
        { type: 'NUMBER', name: 'NUMBER' },
        { type: 'TEXT', name: 'TEXT' },
      ],
      execute: ({ value }) => ({ outputs: [Number(value), `v${value}`] }),
    }),
    def({
      id: 'StubAdd',
      inputs: [socket('NUMBER', 'a'), int('b', { min: -1000 })],
      outputs: [{ type: 'NUMBER', name: 'NUMBER' }],
      execute: ({ a, b }) => ({ outputs: [Number(a) + Number(b)] }),
    }),
    // a "sampler": slow, progress per step, interruptible
    def({
      id: 'StubSlow',
      inputs: [
        socket('NUMBER', 'x'),
        int('seed', { max: 0xffffffffffffffff, control_after_generate: true }),
        int('steps', { default: 3, min: 1, max: 100000 }),
      ],
      outputs: [{ type: 'NUMBER', name: 'NUMBER' }],
      execute: async ({ x, seed, steps }, ctx) => {
        for (let i = 0; i < Number(steps); i++) {
          ctx.checkInterrupted();
          await new Promise((r) => setTimeout(r, ctx.services.slowDelayMs));
          ctx.progress(i + 1, Number(steps));
        }
        return { outputs: [Number(x) + Number(seed)] };
      },
    }),
    def({
      id: 'StubThrow',
      inputs: [socket('NUMBER', 'x')],
      outputs: [{ type: 'NUMBER', name: 'NUMBER' }],
      execute: () => {
        throw new RangeError('stub failure on purpose');
      },
    }),
    // an output node writing a real PNG (value encoded in its pixels)
    def({
      id: 'StubSave',
      outputNode: true,
      inputs: [socket('NUMBER', 'x'), { name: 'filename_prefix', type: 'STRING', options: { default: 'stub' } }],
      outputs: [],
      execute: ({ x, filename_prefix }, ctx) => {
        const v = Number(x) & 255;
        const name = `${filename_prefix}_${ctx.promptId.slice(0, 8)}_${ctx.nodeId}.png`;
        writeFileAtomic(
          join(ctx.services.dirs.output, name),
          encodePng(new Uint8Array([v, v, v, v, v, v, v, v, v, v, v, v]), 2, 2, 3, {
            prompt: JSON.stringify(ctx.prompt),
          }),
        );
        return { outputs: [], ui: { images: [{ filename: name, subfolder: '', type: 'output' }], value: [Number(x)] } };
      },
    }),
    // every validation feature
    def({
      id: 'StubCheck',
      inputs: [
        socket('NUMBER', 'x'),
        { name: 'f', type: 'FLOAT', options: { default: 0.5, min: 0, max: 1, step: 0.01 } },
        { name: 'mode', type: 'COMBO', options: {}, choices: ['fast', 'slow'] },
        { name: 'flag', type: 'BOOLEAN', options: { default: false } },
        { name: 'text', type: 'STRING', options: { default: '' }, optional: true },
        { name: 'extra', type: 'TEXT', options: {}, optional: true },
      ],
      outputs: [{ type: 'NUMBER', name: 'NUMBER' }],
      validate: ({ f, text }) => {
        if (text === 'explode') throw new Error('validator blew up');
        return f === 0.13 ? 'f must not be 0.13' : true;
      },
      execute: ({ x }) => ({ outputs: [x] }),
    }),
    def({
      id: 'StubBadCombo',
      inputs: [
        {
          name: 'pick',
          type: 'COMBO',
          options: {},
          choices: () => {
            throw new Error('choice list unavailable');
          },
        },
      ],
      outputs: [{ type: 'NUMBER', name: 'NUMBER' }],
      execute: () => ({ outputs: [0] }),
    }),
    // a chatty node: `count` previews of `kb` KiB and one progress event each (for websocket back-pressure)
    def({
      id: 'StubPreview',
      inputs: [
        socket('NUMBER', 'x'),
        int('count', { default: 10, max: 1000000 }),
        int('kb', { default: 1, max: 4096 }),
      ],
      outputs: [{ type: 'NUMBER', name: 'NUMBER' }],
      execute: async ({ x, count, kb }, ctx) => {
        const jpeg = new Uint8Array(Math.max(3, Number(kb) * 1024)).fill(0xab);
        jpeg.set([0xff, 0xd8, 0xff]);
        for (let i = 0; i < Number(count); i++) {
          ctx.checkInterrupted();
          ctx.preview({ format: 'jpeg', bytes: jpeg });
          ctx.progress(i + 1, Number(count));
          if (i % 200 === 0) await new Promise((r) => setImmediate(r));
        }
        return { outputs: [x] };
      },
    }),
    def({
      id: 'StubAny',
      inputs: [socket('*', 'anything')],
      outputs: [{ type: 'NUMBER,TEXT', name: 'EITHER' }],
      execute: ({ anything }) => ({ outputs: [anything] }),
    }),
  ];
  return new Map(nodes.map((n) => [n.id, n]));
}

export interface StubServer extends RunningServer<StubServices> {
  root: string;
  stop(opts?: { keep?: boolean }): Promise<void>;
}

/** Start the real server on an ephemeral loopback port with the stub registry, in a fresh temp folder. */
export async function startStubServer(
  over: Partial<ServerConfig<StubServices>> & { root?: string; slowDelayMs?: number } = {},
): Promise<StubServer> {
  const root = over.root ?? mkdtempSync(join(tmpdir(), 'tcd-stub-'));
  const cfg: ServerConfig<StubServices> = {
    host: '127.0.0.1',
    port: 0,
    dataDir: join(root, 'data'),
    modelsDir: join(root, 'models'),
    outputDir: join(root, 'output'),
    inputDir: join(root, 'input'),
    tempDir: join(root, 'temp'),
    workflowsDir: join(root, 'workflows'),
    registry: stubRegistry(),
    log: () => {},
    makeServices: ({ dirs }) => ({ runs: new Map(), dirs, slowDelayMs: over.slowDelayMs ?? 20 }),
    ...over,
  };
  const s = await startServer(cfg);
  return Object.assign(s, {
    root,
    stop: async (o: { keep?: boolean } = {}) => {
      await s.close();
      if (!o.keep) rmSync(root, { recursive: true, force: true });
    },
  });
}

/** load(1) -> add(+b) -> slow(seed) -> save: the shape of a diffusion prompt. */
export function chainPrompt(o: { value?: number; b?: number; seed?: number; steps?: number; prefix?: string } = {}) {
  return {
    '1': { class_type: 'StubLoad', inputs: { value: o.value ?? 1 } },
    '2': { class_type: 'StubAdd', inputs: { a: ['1', 0], b: o.b ?? 2 } },
    '3': { class_type: 'StubSlow', inputs: { x: ['2', 0], seed: o.seed ?? 5, steps: o.steps ?? 3 } },
    '4': { class_type: 'StubSave', inputs: { x: ['3', 0], filename_prefix: o.prefix ?? 'stub' } },
  };
}
