/**
 * `tcd-studio worker --queue redis://HOST:PORT [--device N] [--concurrency 1] [--models DIR] [--output DIR]
 * [--input DIR] [--temp DIR] [--data DIR] [--ep cpu|cuda] [--no-affinity] [--max-wait-ms MS] [--id NAME] [--lock-ms MS]
 * [--stalled-ms MS] [--max-stalled N]`:
 * one farm worker process; folders default like `serve` (flags, then TCD_* environment, then ./models, ./output ...).
 */
import { parseArgs } from 'node:util';
import { resolveHostOptions } from '../host.js';
import { FarmWorker } from './worker.js';

export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: {
    queue: { type: 'string' }, device: { type: 'string' }, concurrency: { type: 'string' }, models: { type: 'string' }, output: { type: 'string' },
    input: { type: 'string' }, temp: { type: 'string' }, data: { type: 'string' }, ep: { type: 'string' }, id: { type: 'string' },
    'no-affinity': { type: 'boolean' }, 'lock-ms': { type: 'string' }, 'stalled-ms': { type: 'string' }, 'max-stalled': { type: 'string' },
    'keep-models': { type: 'string' }, 'no-previews': { type: 'boolean' }, 'max-wait-ms': { type: 'string' },
  } });
  const queue = values.queue ?? process.env.TCD_QUEUE;
  if (!queue) { console.error('worker needs --queue redis://HOST:PORT'); return 2; }
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const r = resolveHostOptions({ models: values.models, output: values.output, input: values.input, temp: values.temp, data: values.data, ep: values.ep });
  const w = await FarmWorker.start({
    queue, modelsDir: r.modelsDir, outputDir: r.outputDir, inputDir: r.inputDir, tempDir: r.tempDir, dataDir: r.dataDir, ep: r.ep,
    device: values.device ?? process.env.TCD_DEVICE, concurrency: num(values.concurrency) ?? 1, id: values.id, affinity: !values['no-affinity'],
    lockMs: num(values['lock-ms']), stalledIntervalMs: num(values['stalled-ms']), maxStalledCount: num(values['max-stalled']),
    keepModels: num(values['keep-models']), previews: !values['no-previews'], maxWaitMs: num(values['max-wait-ms']),
  });
  const stop = async () => { await w.close(true); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return new Promise<number>(() => {});
}
