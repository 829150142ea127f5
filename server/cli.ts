#!/usr/bin/env node
/**
 * tcd-studio command line:
 *   serve [--port 8188] [--listen 127.0.0.1] [--models DIR] [--data DIR] [--output DIR] [--token T] [--cors ORIGIN] [--ep auto|cpu|webgpu|cuda]
 *   run WORKFLOW.json|.png ... [--models DIR] [--out DIR] [--set NODE.INPUT=VALUE ...] [--seeds A-B] [--prompts FILE.csv] [--ep ...]
 *   convert WORKFLOW.json [--out API.json]      UI format -> API format
 *   make-checkpoint --arch sd15|sdxl|demo --out FILE [--seed N] [--dtype F16|F32|BF16]
 */
import { parseArgs } from 'node:util';
import { serve } from './host.js';
import { parsePreviewMethod, previewSetting } from './preview-method.js';
import { runCommand } from './run-command.js';
import { convertCommand } from './run-command.js';
import { makeCheckpointCommand } from './tools/make-checkpoint.js';
import { modelsCommand } from './models/command.js';
import { workerCommand } from './farm/worker-command.js';

const USAGE = `usage: tcd-studio <serve|worker|run|convert|make-checkpoint> [options]
  serve            [--port 8188] [--listen 127.0.0.1] [--models DIR] [--data DIR] [--output DIR] [--input DIR] [--token TOKEN] [--cors ORIGIN] [--ep auto|cpu|webgpu|cuda] [--no-demo] [--front-end-root DIR] [--extra-model-paths-config FILE.yaml]
                   [--preview-method none|auto|latent2rgb|taesd]
  run WORKFLOW...  [--models DIR] [--out DIR] [--data DIR] [--input DIR] [--temp DIR] [--set NODE.INPUT=VALUE ...] [--seeds A-B] [--prompts FILE.csv] [--ep ...]
  convert WORKFLOW [--out FILE]
  make-checkpoint  --arch sd15|sdxl|demo --out FILE [--seed N] [--dtype F16|F32|BF16]
  models           list | pull NAME... [--models DIR] [--catalog FILE.json] [--skip-sha]
  serve ... --queue redis://HOST:PORT      farm: prompts go to Redis for worker processes (docs/farm.md)
  serve ... --devices 0,1                  one executor per local GPU
  worker --queue redis://HOST:PORT [--device N] [--concurrency 1] [--models DIR] [--output DIR] [--input DIR] [--temp DIR]`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve': {
      const { values } = parseArgs({ args: rest, options: {
        port: { type: 'string' }, listen: { type: 'string' }, models: { type: 'string' }, data: { type: 'string' }, output: { type: 'string' },
        input: { type: 'string' }, temp: { type: 'string' }, token: { type: 'string' }, cors: { type: 'string' }, ep: { type: 'string' },
        'no-demo': { type: 'boolean' }, 'no-previews': { type: 'boolean' },
        queue: { type: 'string' }, devices: { type: 'string' }, 'front-end-root': { type: 'string' },
        'extra-model-paths-config': { type: 'string' }, 'preview-method': { type: 'string' },
      } });
      const preview = previewSetting(values['no-previews'] ? 'none' : parsePreviewMethod(values['preview-method'] ?? process.env.TCD_PREVIEW_METHOD));
      if (preview.note) console.log(preview.note);
      const server = await serve({
        port: values.port ? Number(values.port) : undefined, listen: values.listen, models: values.models, data: values.data,
        output: values.output, input: values.input, temp: values.temp, token: values.token, cors: values.cors, ep: values.ep,
        demo: !values['no-demo'], previews: preview.previews,
        queue: values.queue ?? process.env.TCD_QUEUE, devices: values.devices?.split(',').map((d) => d.trim()).filter(Boolean),
        frontEndRoot: values['front-end-root'], extraModelPaths: values['extra-model-paths-config'],
      });
      console.log(`tcd-studio listening on ${server.url}${values.token || process.env.TCD_TOKEN ? ' (access token required)' : ''}`);
      const stop = async () => { await server.close(); process.exit(0); };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      return new Promise<number>(() => {});
    }
    case 'worker': return workerCommand(rest);
    case 'run': return runCommand(rest);
    case 'convert': return convertCommand(rest);
    case 'models': return modelsCommand(rest);
    case 'make-checkpoint': {
      const { values } = parseArgs({ args: rest, options: { arch: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, dtype: { type: 'string' } } });
      if (!values.arch || !values.out) { console.error('make-checkpoint needs --arch and --out'); return 2; }
      await makeCheckpointCommand({ arch: values.arch, out: values.out, seed: values.seed ? Number(values.seed) : undefined, dtype: values.dtype });
      return 0;
    }
    case undefined: case '-h': case '--help': case 'help':
      console.log(USAGE);
      return cmd ? 0 : 2;
    default:
      console.error(`unknown command "${cmd}"\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
  console.error(`tcd-studio: ${(e as Error).message}`);
  process.exit(1);
});
