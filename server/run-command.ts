/**
 * `tcd-studio run WORKFLOW` (UI or API format JSON, or a PNG made by SaveImage) executed in this process, without
 * a server: progress bar on a terminal, image paths at the end, non-zero exit with a one-line reason on failure.
 * `--set NODE.INPUT=VALUE` overrides inputs (NODE = id or title); `--seeds A-B` renders one image set per seed,
 * reusing loaded models. `tcd-studio convert` turns a UI-format workflow into API format.
 */
import { parseArgs } from 'node:util';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createRegistry } from '../nodes/index.js';
import { Executor } from './executor/execute.js';
import { validatePrompt } from './executor/validate.js';
import type { Prompt } from './executor/prompt.js';
import { isUiWorkflow, uiToApi } from './workflow/convert.js';
import { readPngText } from './storage/png.js';
import { ModelFolders } from './storage/model-folders.js';
import { makeServices, resolveHostOptions } from './host.js';
import { ensureDemoCheckpoint } from './engine/make-checkpoint.js';
import type { Registry } from './executor/node-definition.js';

export interface LoadedWorkflow { prompt: Prompt; workflow?: unknown }

/** Read a workflow file in any accepted form. */
export function loadWorkflowFile(path: string, registry: Registry<any>): LoadedWorkflow {
  const bytes = readFileSync(path);
  let doc: unknown;
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    const text = readPngText(bytes);
    if (text.workflow) doc = JSON.parse(text.workflow);
    else if (text.prompt) doc = JSON.parse(text.prompt);
    else throw new Error(`${path}: PNG has no embedded workflow or prompt`);
  } else {
    try { doc = JSON.parse(bytes.toString('utf8')); } catch (e) { throw new Error(`${path}: not valid JSON (${(e as Error).message})`); }
  }
  if (doc && typeof doc === 'object' && 'prompt' in (doc as object) && !isUiWorkflow(doc)) doc = (doc as { prompt: unknown }).prompt;
  if (isUiWorkflow(doc)) return { prompt: uiToApi(doc, registry), workflow: doc };
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`${path}: neither a UI-format workflow nor an API-format prompt`);
  return { prompt: doc as Prompt };
}

/** Apply `NODE.INPUT=VALUE` (NODE is an id or a node title; VALUE is JSON when it parses, else a string). */
export function applySet(prompt: Prompt, assignment: string): void {
  const m = /^([^=]+)\.([^.=]+)=(.*)$/s.exec(assignment);
  if (!m) throw new Error(`--set ${assignment}: expected NODE.INPUT=VALUE`);
  const [, nodeKey, input, raw] = m;
  const ids = prompt[nodeKey] ? [nodeKey] : Object.keys(prompt).filter((id) => prompt[id]._meta?.title === nodeKey || prompt[id].class_type === nodeKey);
  if (ids.length === 0) throw new Error(`--set ${assignment}: no node with id, title or class "${nodeKey}"`);
  let value: unknown;
  try { value = JSON.parse(raw); } catch { value = raw; }
  for (const id of ids) prompt[id].inputs[input] = value;
}

function parseSeeds(s: string): bigint[] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  if (!m) throw new Error(`--seeds ${s}: expected N or A-B`);
  const a = BigInt(m[1]), b = BigInt(m[2] ?? m[1]);
  if (b < a || b - a > 100000n) throw new Error(`--seeds ${s}: empty or too long range`);
  const out: bigint[] = [];
  for (let x = a; x <= b; x++) out.push(x);
  return out;
}

function bar(done: number, total: number, label: string): string {
  const w = 24, f = total ? Math.round((done / total) * w) : 0;
  return `\r[${'#'.repeat(f)}${'.'.repeat(w - f)}] ${done}/${total} ${label}`.padEnd(70);
}

export async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: {
    models: { type: 'string' }, out: { type: 'string' }, data: { type: 'string' }, input: { type: 'string' }, set: { type: 'string', multiple: true },
    seeds: { type: 'string' }, ep: { type: 'string' }, 'no-demo': { type: 'boolean' },
  } });
  if (positionals.length !== 1) { console.error('run needs exactly one workflow file'); return 2; }
  const o = resolveHostOptions({ models: values.models, output: values.out, data: values.data, input: values.input, ep: values.ep });
  const registry = createRegistry();
  let loaded: LoadedWorkflow;
  try { loaded = loadWorkflowFile(resolve(positionals[0]), registry); } catch (e) { console.error(`tcd-studio run: ${(e as Error).message}`); return 1; }
  for (const s of values.set ?? []) applySet(loaded.prompt, s);
  if (!values['no-demo']) await ensureDemoCheckpoint(o.modelsDir);
  mkdirSync(o.outputDir, { recursive: true });
  const services = makeServices(new ModelFolders(o.modelsDir), { output: o.outputDir, input: o.inputDir, temp: o.tempDir }, { ep: o.ep, dataDir: o.dataDir, log: (m) => process.stderr.write(`${m}\n`) }, false);
  const executor = new Executor(registry, services);
  const seeds = values.seeds ? parseSeeds(values.seeds) : [null];
  const tty = process.stderr.isTTY;
  const images: string[] = [];
  const summary: { seed: string; status: string; seconds: number; images: number }[] = [];
  let failed = false;
  try {
    for (const [i, seed] of seeds.entries()) {
      const prompt: Prompt = JSON.parse(JSON.stringify(loaded.prompt));
      if (seed !== null) for (const n of Object.values(prompt)) for (const k of ['seed', 'noise_seed']) if (k in n.inputs && !Array.isArray(n.inputs[k])) n.inputs[k] = seed.toString();
      const v = validatePrompt(prompt, registry, services);
      if (!v.ok) {
        const first = Object.entries(v.body.node_errors)[0];
        console.error(`tcd-studio run: ${v.body.error.message}${first ? `: node ${first[0]} (${first[1].class_type}) ${first[1].errors[0].message}: ${first[1].errors[0].details}` : `: ${v.body.error.details}`}`);
        return 1;
      }
      const t0 = Date.now();
      let label = '';
      const result = await executor.run(
        { promptId: `cli-${i}`, prompt, extraData: loaded.workflow ? { extra_pnginfo: { workflow: loaded.workflow } } : {}, outputs: v.outputs, constants: v.constants },
        {
          signal: new AbortController().signal, preview: () => {},
          emit: (ev) => {
            if (ev.type === 'executing' && ev.data.node) { label = `${prompt[ev.data.node].class_type}${seeds.length > 1 ? ` (seed ${seed})` : ''}`; if (tty) process.stderr.write(bar(0, 1, label)); }
            if (ev.type === 'progress' && tty) process.stderr.write(bar(ev.data.value, ev.data.max, label));
            if (ev.type === 'execution_error') console.error(`${tty ? '\n' : ''}tcd-studio run: node ${ev.data.node_id} (${ev.data.node_type}) failed: ${ev.data.exception_message}`);
          },
        },
      );
      if (tty) process.stderr.write('\r'.padEnd(72) + '\r');
      let n = 0;
      for (const out of Object.values(result.outputs)) for (const img of (out.images as { filename: string; subfolder: string; type: string }[] | undefined) ?? []) {
        if (img.type !== 'output') continue;
        images.push(join(o.outputDir, img.subfolder, img.filename)); n++;
      }
      summary.push({ seed: seed?.toString() ?? '-', status: result.status, seconds: (Date.now() - t0) / 1000, images: n });
      if (result.status !== 'success') { failed = true; break; }
    }
  } finally {
    await services.engine().close();
  }
  if (seeds.length > 1) console.table(summary);
  for (const p of images) console.log(p);
  return failed ? 1 : 0;
}

export async function convertCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { out: { type: 'string' } } });
  if (positionals.length !== 1) { console.error('convert needs one workflow file'); return 2; }
  const { prompt } = loadWorkflowFile(resolve(positionals[0]), createRegistry());
  const text = JSON.stringify(prompt, null, 2);
  if (values.out) writeFileSync(values.out, text + '\n'); else console.log(text);
  return 0;
}
