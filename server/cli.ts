#!/usr/bin/env node
/**
 * tcd-studio command line. Every command's options, their TCD_* variables and defaults are one table
 * (server/settings.ts, docs/settings.md); `tcd-studio COMMAND --help` prints them. Settings are resolved here, once,
 * and passed down: nothing below reads the environment for a setting.
 *   serve            the HTTP + websocket server (--queue redis://... for a farm, --devices 0,1 for several GPUs)
 *   worker           a farm worker
 *   run WORKFLOW...  run workflows in this process
 *   convert WORKFLOW UI format -> API format
 *   models           list | pull NAME...
 *   make-checkpoint  a random-weight test checkpoint
 */
import { COMMANDS, UsageError, parseCommandLine, type Command, type Settings } from './settings.js';
import { serve } from './host.js';
import { LogBuffer, captureProcessOutput } from './app/log-buffer.js';
import { setMaxImagePixels } from './storage/image-sniff.js';
import { DEFAULT_PREVIEW_METHOD, previewSetting } from './preview-method.js';
import { runCommand, convertCommand } from './run-command.js';
import { makeCheckpointCommand } from './tools/make-checkpoint.js';
import { modelsCommand } from './models/command.js';
import { workerCommand } from './farm/worker-command.js';

const USAGE = `usage: tcd-studio <${Object.keys(COMMANDS).join('|')}> [options]
${Object.entries(COMMANDS)
  .map(([, c]) => `  ${c.usage.padEnd(56)}${c.summary}`)
  .join('\n')}
tcd-studio COMMAND --help lists a command's options; docs/settings.md lists every setting.`;

async function serveCommand(s: Settings): Promise<number> {
  // the whole process output, for the Logs tab of ComfyUI's frontend (as ComfyUI captures its own)
  const logBuffer = new LogBuffer();
  captureProcessOutput(logBuffer);
  const preview = previewSetting(s.previews ? (s.previewMethod ?? DEFAULT_PREVIEW_METHOD) : 'none');
  if (preview.note) console.log(preview.note);
  const server = await serve({ ...s, previews: preview.previews, logBuffer });
  console.log(`tcd-studio listening on ${server.url}${s.token ? ' (access token required)' : ''}`);
  const stop = async () => {
    await server.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return new Promise<number>(() => {});
}

async function makeCheckpoint(s: Settings): Promise<number> {
  if (!s.arch || !s.checkpointOut) {
    console.error('make-checkpoint needs --arch and --out');
    return 2;
  }
  await makeCheckpointCommand({ arch: s.arch, out: s.checkpointOut, seed: s.seed, dtype: s.dtype });
  return 0;
}

const RUN: Record<Command, (s: Settings, positionals: string[]) => Promise<number>> = {
  serve: serveCommand,
  worker: workerCommand,
  run: runCommand,
  convert: convertCommand,
  models: modelsCommand,
  'make-checkpoint': makeCheckpoint,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  if (!(cmd in COMMANDS)) {
    console.error(`unknown command "${cmd}"\n${USAGE}`);
    return 2;
  }
  const command = cmd as Command;
  let parsed;
  try {
    parsed = parseCommandLine(command, rest, process.env);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`tcd-studio ${command}: ${e.message}`);
    return 2;
  }
  if (parsed.help) {
    console.log(parsed.help);
    return 0;
  }
  setMaxImagePixels(parsed.settings.maxImagePixels); // the image decoders' one process-wide budget
  return RUN[command](parsed.settings, parsed.positionals);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`tcd-studio: ${(e as Error).message}`);
    process.exit(1);
  },
);
