/**
 * CUDA provider options beyond the device: `--cuda-options KEY=VALUE,...` (TCD_CUDA_OPTIONS), ONNX Runtime's own
 * option names. onnxruntime-node passes only the device id to the CUDA provider, so the provider otherwise always runs
 * with its defaults (exhaustive cuDNN algorithm search, the largest cuDNN workspace, an arena growing by powers of
 * two, TF32, NCHW convolutions), which decide first-call time and GPU memory. A small native addon
 * (native/ort-cuda, built by `npm run setup:cuda` or scripts/build-ort-cuda.sh) hands these options to
 * every CUDA session the process creates afterwards.
 * Example:
 *   const entries = parseCudaOptions('arena_extend_strategy=kSameAsRequested,cudnn_conv_use_max_workspace=0');
 *   const installed = installCudaOptions(ortPackageDir, entries, addonPath); // before the first CUDA session
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ortLibDir } from './cuda-check.js';

type ValueRule = readonly string[] | 'bool' | 'uint';

/**
 * The options accepted, with their values (the CUDA provider's option parser). Left out on purpose: device_id (the
 * engine's --device sets it), enable_cuda_graph (a captured graph replays fixed device addresses, so every input and
 * output must be bound in GPU memory, which onnxruntime-node offers only for WebGPU: --cuda-graph runs the UNet in
 * such a session, bound-session.ts), the user stream and external
 * allocator addresses, and the tunable_op keys (parsed by the provider but not kept in the options struct).
 */
export const CUDA_OPTION_RULES: Readonly<Record<string, ValueRule>> = {
  cudnn_conv_algo_search: ['EXHAUSTIVE', 'HEURISTIC', 'DEFAULT'],
  arena_extend_strategy: ['kNextPowerOfTwo', 'kSameAsRequested'],
  gpu_mem_limit: 'uint',
  cudnn_conv_use_max_workspace: 'bool',
  cudnn_conv1d_pad_to_nc1d: 'bool',
  do_copy_in_default_stream: 'bool',
  prefer_nhwc: 'bool',
  use_tf32: 'bool',
  enable_skip_layer_norm_strict_mode: 'bool',
  use_ep_level_unified_stream: 'bool',
  gelu_disable_half2: 'bool',
};

export type CudaOptionEntries = ReadonlyArray<readonly [key: string, value: string]>;

/**
 * Parses `KEY=VALUE,KEY=VALUE` (commas or semicolons; spaces around parts ignored) into entries in the order given,
 * checking every key and value; booleans become "1" / "0". Throws an Error naming the setting, the entry and what
 * it takes. An empty text gives no entries.
 */
export function parseCudaOptions(text: string, setting = '--cuda-options'): CudaOptionEntries {
  const out = new Map<string, string>();
  for (const raw of text.split(/[,;]/)) {
    const part = raw.trim();
    if (!part) continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`${setting}: '${part}' is not KEY=VALUE`);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    const rule = CUDA_OPTION_RULES[key];
    if (!rule) {
      const why = key === 'device_id' ? ' (the device is --device)' : key === 'enable_cuda_graph' ? CUDA_GRAPH_WHY : '';
      throw new Error(
        `${setting}: '${key}' is not a CUDA provider option tcd-studio passes${why}; known: ${Object.keys(CUDA_OPTION_RULES).join(', ')}`,
      );
    }
    out.set(key, checkValue(setting, key, value, rule));
  }
  return [...out];
}

const CUDA_GRAPH_WHY =
  ' (use --cuda-graph: a CUDA graph replays fixed GPU addresses, so the UNet then runs with its inputs and outputs bound in GPU memory)';

function checkValue(setting: string, key: string, value: string, rule: ValueRule): string {
  if (rule === 'bool') {
    if (/^(1|true)$/i.test(value)) return '1';
    if (/^(0|false)$/i.test(value)) return '0';
    throw new Error(`${setting}: ${key} takes 0 or 1, got '${value}'`);
  }
  if (rule === 'uint') {
    if (/^\d+$/.test(value) && Number.isSafeInteger(Number(value))) return String(Number(value));
    throw new Error(`${setting}: ${key} takes a whole number, got '${value}'`);
  }
  if (!rule.includes(value)) throw new Error(`${setting}: ${key} takes ${rule.join(' | ')}, got '${value}'`);
  return value;
}

/** The entries as one line for logs and reports: "key=value, key=value". */
export function describeCudaOptions(entries: CudaOptionEntries): string {
  return entries.map(([k, v]) => `${k}=${v}`).join(', ');
}

/** Where scripts/build-ort-cuda.sh puts the addon, under the project root. */
export const CUDA_ADDON = join('build', 'ort-cuda', 'ort_cuda.node');

interface CudaOptionsAddon {
  install(libonnxruntimePath: string, options: string): string;
  effective(): string;
}

/** What install gives back: the addon (for effective()) and the ONNX Runtime release it patched. */
export interface InstalledCudaOptions {
  ortRelease: string;
  /** the CUDA provider's options as its last session set-up left them ('' before any CUDA session) */
  effective(): string;
}

/**
 * Hands `entries` to every CUDA session this process creates from now on, through the addon at `addonPath`. The
 * onnxruntime-node package at `ortPackageDir` must already be imported (its libonnxruntime is the one patched).
 * Throws with what to do when the addon is not built or the library is not loaded.
 */
export function installCudaOptions(
  ortPackageDir: string,
  entries: CudaOptionEntries,
  addonPath: string,
): InstalledCudaOptions {
  if (process.platform !== 'linux') throw new Error('--cuda-options: supported on Linux only');
  const addon = loadOrtCudaAddon<CudaOptionsAddon>(addonPath, '--cuda-options');
  const ortRelease = addon.install(libonnxruntimeOf(ortPackageDir, '--cuda-options'), optionsText(entries));
  return { ortRelease, effective: () => addon.effective() };
}

/** The ort_cuda addon at `addonPath`, or an error naming `flag` and how to build the addon. */
export function loadOrtCudaAddon<T>(addonPath: string, flag: string): T {
  if (!existsSync(addonPath)) {
    throw new Error(
      `${flag} needs the native helper ${addonPath}: run \`npm run setup:cuda\` or \`bash scripts/build-ort-cuda.sh\` (needs gcc)`,
    );
  }
  return createRequire(import.meta.url)(addonPath) as T;
}

/** The libonnxruntime.so.1 of the onnxruntime-node package at `ortPackageDir` (the one the addon calls into). */
export function libonnxruntimeOf(ortPackageDir: string, flag: string): string {
  const libDir = ortLibDir(ortPackageDir);
  if (!libDir) throw new Error(`${flag}: no libonnxruntime.so.1 in ${ortPackageDir}`);
  return join(libDir, 'libonnxruntime.so.1');
}

/** Entries as the addon reads them: "key\tvalue\n" per option. */
export function optionsText(entries: CudaOptionEntries): string {
  return entries.map(([k, v]) => `${k}\t${v}\n`).join('');
}
