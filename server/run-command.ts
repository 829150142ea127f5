/**
 * `tcd-studio run WORKFLOW` (UI or API format JSON, or a PNG made by SaveImage) executed in this process, without
 * a server. Batch runs render many images in one process, reusing loaded models and cached nodes:
 *   --set NODE.INPUT=VALUE   override an input (NODE = id, title or class), for every render
 *   --seeds A-B              one render per seed (every seed / noise_seed input)
 *   --prompts FILE.csv       one render per row; the header names NODE.INPUT columns, an empty cell keeps the value
 * Rows and seeds combine (rows x seeds). One progress bar on a terminal; image paths go to stdout, the summary table
 * (more than one render) and errors to stderr; exit 1 with a one-line reason on failure.
 * `tcd-studio convert` turns a UI-format workflow into API format.
 * Example: tcd-studio run workflows/demo.json --prompts prompts.csv --seeds 1-4
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { createRegistry } from '../nodes/index.js';
import { Executor } from './executor/execute.js';
import { runPrompt } from './queue/run-prompt.js';
import { validatePrompt, type ValidPrompt } from './executor/validate.js';
import type { Prompt } from './executor/prompt.js';
import { isUiWorkflow, uiToApi } from './workflow/convert.js';
import { readPngText } from './storage/png.js';
import { loadExtraModelPaths } from './storage/extra-model-paths.js';
import { ModelFolders } from './storage/model-folders.js';
import { engineOptions, makeServices } from './host.js';
import type { Settings } from './settings.js';
import { ensureDemoCheckpoint } from './tools/make-checkpoint.js';
import { ensureDemoControlNet } from './tools/make-controlnet.js';
import { ensureDemoUpscaleModel } from './tools/make-upscale-model.js';
import { checkRequestedProvider } from './engine/engine.js';
import type { Registry } from './executor/node-definition.js';
import type { ImageRef } from '../protocol/images.js';

export interface LoadedWorkflow {
  prompt: Prompt;
  workflow?: unknown;
}

/** Read a workflow file in any accepted form: UI or API JSON, `{prompt: ...}`, or a PNG with tEXt chunks. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
export function loadWorkflowFile(path: string, registry: Registry<any>): LoadedWorkflow {
  const bytes = readFileSync(path);
  let doc: unknown;
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    const text = readPngText(bytes);
    if (text.workflow) doc = JSON.parse(text.workflow);
    else if (text.prompt) doc = JSON.parse(text.prompt);
    else throw new Error(`${path}: PNG has no embedded workflow or prompt`);
  } else {
    try {
      doc = JSON.parse(bytes.toString('utf8'));
    } catch (e) {
      throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (doc && typeof doc === 'object' && 'prompt' in (doc as object) && !isUiWorkflow(doc))
    doc = (doc as { prompt: unknown }).prompt;
  if (isUiWorkflow(doc)) return { prompt: uiToApi(doc, registry), workflow: doc };
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new Error(`${path}: neither a UI-format workflow nor an API-format prompt`);
  return { prompt: doc as Prompt };
}

/** Ids of the nodes a NODE key names: an id, else every node with that title, else every node of that class. */
function nodesNamed(prompt: Prompt, key: string): string[] {
  if (prompt[key]) return [key];
  const byTitle = Object.keys(prompt).filter((id) => prompt[id]._meta?.title === key);
  return byTitle.length ? byTitle : Object.keys(prompt).filter((id) => prompt[id].class_type === key);
}

/**
 * Set one input from text. A STRING input keeps the text as it is (a prompt "42" stays a string); other inputs take
 * the text as JSON when it parses (numbers, booleans, links) and as a string otherwise.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
export function setInput(prompt: Prompt, nodeKey: string, input: string, raw: string, registry?: Registry<any>): void {
  const ids = nodesNamed(prompt, nodeKey);
  if (ids.length === 0) throw new Error(`no node with id, title or class "${nodeKey}"`);
  for (const id of ids) {
    const def = registry?.get(prompt[id].class_type);
    const spec = def?.inputs.find((s) => s.name === input);
    // the node would ignore an input its class does not declare: a typo must not run the workflow unchanged
    if (def && !spec)
      throw new Error(
        `node ${id} (${def.id}) has no input "${input}"; its inputs: ${def.inputs.map((s) => s.name).join(', ')}`,
      );
    let value: unknown = raw;
    if (spec?.type !== 'STRING') {
      try {
        value = JSON.parse(raw);
      } catch {
        value = raw;
      }
    }
    prompt[id].inputs[input] = value;
  }
}

/** Apply `NODE.INPUT=VALUE` (see setInput). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
export function applySet(prompt: Prompt, assignment: string, registry?: Registry<any>): void {
  const m = /^([^=]+)\.([^.=]+)=(.*)$/s.exec(assignment);
  if (!m) throw new Error(`--set ${assignment}: expected NODE.INPUT=VALUE`);
  try {
    setInput(prompt, m[1], m[2], m[3], registry);
  } catch (e) {
    throw new Error(`--set ${assignment}: ${(e as Error).message}`);
  }
}

export function parseSeeds(s: string): bigint[] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  if (!m) throw new Error(`--seeds ${s}: expected N or A-B`);
  const a = BigInt(m[1]),
    b = BigInt(m[2] ?? m[1]);
  if (b < a || b - a > 100000n) throw new Error(`--seeds ${s}: empty or too long range`);
  const out: bigint[] = [];
  for (let x = a; x <= b; x++) out.push(x);
  return out;
}

/** RFC 4180 CSV: quoted fields may hold commas, newlines and doubled quotes. Returns rows of fields. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [],
    field = '',
    quoted = false,
    i = 0;
  const s = text.replace(/^\uFEFF/, '');
  while (i < s.length) {
    const c = s[i];
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') {
        quoted = false;
        i++;
        continue;
      }
      field += c;
      i++;
      continue;
    }
    if (c === '"' && field === '') {
      quoted = true;
      i++;
      continue;
    }
    if (c === ',') {
      row.push(field);
      field = '';
      i++;
      continue;
    }
    if (c === '\n' || c === '\r') {
      row.push(field);
      field = '';
      if (row.some((f) => f !== '') || row.length > 1) rows.push(row);
      row = [];
      i += c === '\r' && s[i + 1] === '\n' ? 2 : 1;
      continue;
    }
    field += c;
    i++;
  }
  if (quoted) throw new Error('unterminated quoted field');
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** The rows of a --prompts file as lists of [NODE, INPUT, VALUE] (empty cells left out). */
export function promptRows(text: string, file = 'prompts.csv'): { line: number; sets: [string, string, string][] }[] {
  let rows: string[][];
  try {
    rows = parseCsv(text);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  if (rows.length < 2) throw new Error(`${file}: needs a header of NODE.INPUT columns and at least one row`);
  const columns = rows[0].map((h) => {
    const m = /^(.+)\.([^.]+)$/.exec(h.trim());
    if (!m) throw new Error(`${file}: header "${h}" is not NODE.INPUT`);
    return [m[1], m[2]] as const;
  });
  return rows.slice(1).map((r, k) => {
    if (r.length > columns.length)
      throw new Error(`${file}: row ${k + 2} has ${r.length} fields, the header ${columns.length}`);
    return {
      line: k + 2,
      sets: r
        .map((v, j) => [columns[j][0], columns[j][1], v] as [string, string, string])
        .filter(([, , v]) => v !== ''),
    };
  });
}

interface Job {
  label: string;
  file: string;
  row: string;
  seed: string;
  prompt: Prompt;
  valid: ValidPrompt;
  workflow?: unknown;
}

function bar(fraction: number, label: string, cols: number): string {
  const w = 24,
    f = Math.max(0, Math.min(w, Math.round(fraction * w)));
  return `\r[${'#'.repeat(f)}${'.'.repeat(w - f)}] ${label}`
    .slice(0, Math.max(20, cols - 1))
    .padEnd(Math.max(20, cols - 1));
}

/** A plain text table (the summary at the end of a batch). */
export function formatTable(rows: Record<string, string | number>[]): string {
  const cols = Object.keys(rows[0] ?? {});
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(width[i]))
      .join('  ')
      .trimEnd();
  return [
    line(cols),
    line(width.map((w) => '-'.repeat(w))),
    ...rows.map((r) => line(cols.map((c) => String(r[c])))),
  ].join('\n');
}

/** One-line reason for a failed validation. */
function validationReason(v: Exclude<ReturnType<typeof validatePrompt>, ValidPrompt>): string {
  const first = Object.entries(v.body.node_errors)[0];
  return first
    ? `${v.body.error.message}: node ${first[0]} (${first[1].class_type}) ${first[1].errors[0].message}: ${first[1].errors[0].details}`
    : `${v.body.error.message}${v.body.error.details ? `: ${v.body.error.details}` : ''}`;
}

export async function runCommand(s: Settings, positionals: string[]): Promise<number> {
  const fail = (m: string) => {
    console.error(`tcd-studio run: ${m.split('\n')[0]}`);
    return 1;
  };
  if (positionals.length === 0) {
    console.error('run needs a workflow file (UI or API JSON, or a PNG made by SaveImage)');
    return 2;
  }
  const values = { prompts: s.prompts, seeds: s.seeds, set: s.set };
  try {
    checkRequestedProvider(s.ep);
  } catch (e) {
    console.error(`tcd-studio run: ${(e as Error).message}`);
    return 1;
  }
  const registry = createRegistry();
  if (s.demo) {
    await ensureDemoCheckpoint(s.models);
    await ensureDemoControlNet(s.models);
    await ensureDemoUpscaleModel(s.models);
  }
  mkdirSync(s.output, { recursive: true });
  const services = makeServices(
    new ModelFolders(s.models, loadExtraModelPaths(s.extraModelPaths).paths),
    { output: s.output, input: s.input, temp: s.temp },
    engineOptions(s, (m) => process.stderr.write(`${m}\n`)),
    false,
  );

  // every render is built and validated before any model loads, so a bad row fails fast
  const jobs: Job[] = [];
  try {
    const rows = values.prompts
      ? promptRows(readFileSync(resolve(values.prompts), 'utf8'), basename(values.prompts))
      : [null];
    const seeds = values.seeds ? parseSeeds(values.seeds) : [null];
    for (const file of positionals) {
      const loaded = loadWorkflowFile(resolve(file), registry);
      for (const s of values.set ?? []) applySet(loaded.prompt, s, registry);
      for (const row of rows)
        for (const seed of seeds) {
          const prompt: Prompt = structuredClone(loaded.prompt);
          for (const [node, input, v] of row?.sets ?? []) {
            try {
              setInput(prompt, node, input, v, registry);
            } catch (e) {
              throw new Error(`${values.prompts} line ${row!.line}: ${(e as Error).message}`);
            }
          }
          if (seed !== null)
            for (const n of Object.values(prompt))
              for (const k of ['seed', 'noise_seed'])
                if (k in n.inputs && !Array.isArray(n.inputs[k])) n.inputs[k] = seed.toString();
          const label = [
            positionals.length > 1 ? basename(file) : '',
            row ? `row ${row.line}` : '',
            seed !== null ? `seed ${seed}` : '',
          ]
            .filter(Boolean)
            .join(' ');
          const v = validatePrompt(prompt, registry, services);
          if (!v.ok) throw new Error(`${label ? `${label}: ` : ''}${validationReason(v)}`);
          jobs.push({
            label,
            file: basename(file),
            row: row ? String(row.line) : '-',
            seed: seed?.toString() ?? '-',
            prompt,
            valid: v,
            workflow: loaded.workflow,
          });
        }
    }
  } catch (e) {
    return fail((e as Error).message);
  }

  const executor = new Executor(registry, services);
  const tty = process.stderr.isTTY === true;
  const cols = process.stderr.columns ?? 80;
  const images: string[] = [];
  const summary: Record<string, string | number>[] = [];
  let failed = false;
  const t00 = Date.now();
  try {
    for (const [i, job] of jobs.entries()) {
      const t0 = Date.now();
      let node = '',
        step = 0,
        max = 1,
        reason = '';
      const draw = () => {
        if (tty)
          process.stderr.write(
            bar(
              (i + step / max) / jobs.length,
              `${i + 1}/${jobs.length}${job.label ? ` ${job.label}` : ''} ${node}${max > 1 ? ` ${step}/${max}` : ''}`,
              cols,
            ),
          );
      };
      draw();
      const item = {
        number: i,
        promptId: `cli-${i}`,
        prompt: job.prompt,
        clientId: null,
        outputs: job.valid.outputs,
        extraData: job.workflow ? { extra_pnginfo: { workflow: job.workflow } } : {},
      };
      const result = await runPrompt(
        executor,
        item,
        {
          signal: new AbortController().signal,
          preview: () => {},
          emit: (ev) => {
            if (ev.type === 'executing' && ev.data.node) {
              node = job.prompt[ev.data.node].class_type;
              step = 0;
              max = 1;
              draw();
            }
            if (ev.type === 'progress') {
              step = ev.data.value;
              max = ev.data.max;
              draw();
            }
            if (ev.type === 'execution_error')
              reason = `node ${ev.data.node_id} (${ev.data.node_type}) failed: ${ev.data.exception_message}`;
          },
        },
        { valid: job.valid },
      ); // validated above, before any model loaded
      let n = 0;
      for (const out of Object.values(result.entry.outputs))
        for (const img of (out.images as ImageRef[] | undefined) ?? []) {
          if (img.type !== 'output') continue;
          images.push(join(s.output, img.subfolder, img.filename));
          n++;
        }
      summary.push({
        '#': i + 1,
        workflow: job.file,
        row: job.row,
        seed: job.seed,
        status: result.status,
        seconds: ((Date.now() - t0) / 1000).toFixed(2),
        'nodes run': result.result?.executed.length ?? 0,
        images: n,
      });
      if (result.status !== 'success') {
        if (tty) process.stderr.write('\r'.padEnd(cols - 1) + '\r');
        fail(`${job.label ? `${job.label}: ` : ''}${reason || result.status}`);
        failed = true;
        break;
      }
    }
  } finally {
    await services.engine().close();
  }
  if (tty)
    process.stderr.write(
      `${bar(failed ? 0 : 1, `${summary.length}/${jobs.length} done in ${((Date.now() - t00) / 1000).toFixed(1)} s`, cols)}\n`,
    );
  if (jobs.length > 1) process.stderr.write(`${formatTable(summary)}\n`);
  for (const p of images) console.log(p);
  return failed ? 1 : 0;
}

export async function convertCommand(s: Pick<Settings, 'convertOut'>, positionals: string[]): Promise<number> {
  if (positionals.length !== 1) {
    console.error('convert needs one workflow file');
    return 2;
  }
  const { prompt } = loadWorkflowFile(resolve(positionals[0]), createRegistry());
  const text = JSON.stringify(prompt, null, 2);
  if (s.convertOut) writeFileSync(s.convertOut, text + '\n');
  else console.log(text);
  return 0;
}
