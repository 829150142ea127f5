/**
 * Pinning the WebGPU execution provider to one GPU of a multi-GPU host.
 *
 * onnxruntime-node's WebGPU EP runs on Dawn over Vulkan, and Dawn asks for an adapter by power preference only (the
 * EP's `deviceId` option is a context id for custom devices, not a GPU index). So the GPU is chosen below Dawn, by
 * our Vulkan explicit layer VK_LAYER_TCD_device_select (native/vulkan-device-select, built by
 * scripts/build-vulkan-layer.sh into build/vulkan-layer/): with TCD_VULKAN_DEVICE=N it shows the process only the
 * N-th physical device in PCI bus order, the order of nvidia-smi's index and of CUDA with CUDA_DEVICE_ORDER=PCI_BUS_ID.
 *
 * The Vulkan loader reads these variables from the C environment when Dawn creates its Vulkan instance (the first
 * WebGPU session), so they must be in the process environment before that. Worker threads share the process's C
 * environment, but `process.env` writes made inside a worker thread only change that thread's copy and never reach
 * it: set them on the main thread before any engine worker creates a WebGPU session (or pass them to a child
 * process's `env`). One process therefore drives one GPU through WebGPU.
 *
 * Example (main thread, before the engine starts):
 *   const pin = webgpuPinningEnv(1, findVulkanLayer(projectRoot), { base: process.env });
 *   if ('error' in pin) log(`webgpu: ${pin.error}`); else applyPinningEnv(pin.env);
 *   // -> VK_ADD_LAYER_PATH=<root>/build/vulkan-layer VK_LOADER_LAYERS_ENABLE=VK_LAYER_TCD_device_select
 *   //    TCD_VULKAN_DEVICE=1 NODEVICE_SELECT=1
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';

export const VULKAN_LAYER_NAME = 'VK_LAYER_TCD_device_select';
export const VULKAN_LAYER_MANIFEST = 'VkLayer_tcd_device_select.json';
export const VULKAN_LAYER_LIBRARY = 'libVkLayer_tcd_device_select.so';
/** Where scripts/build-vulkan-layer.sh puts the layer, relative to the project root. */
const VULKAN_LAYER_BUILD_DIR = join('build', 'vulkan-layer');

export type PinningEnv = { env: Record<string, string> } | { error: string };

export interface PinningOptions {
  /** the environment the variables will join (values there are kept and extended, not replaced); default none */
  base?: Readonly<Record<string, string | undefined>>;
  /** default process.platform; the layer is built for Linux only */
  platform?: string;
}

/**
 * The environment that makes a process's Vulkan (hence Dawn, hence ORT WebGPU) see only GPU `device`, or why not.
 * Variables, all honoured by the Vulkan loader 1.3.234+ (Debian bookworm ships 1.3.239):
 *   VK_ADD_LAYER_PATH        layerDir, added in front of any existing value: extends the explicit-layer search
 *                            path instead of replacing it as VK_LAYER_PATH would
 *   VK_LOADER_LAYERS_ENABLE  the layer name, appended to any existing comma-separated list
 *   TCD_VULKAN_DEVICE        the index, read by the layer
 *   NODEVICE_SELECT=1        turns off Mesa's implicit VK_LAYER_MESA_device_select where mesa-vulkan-drivers is
 *                            installed: it reorders devices above ours and (Mesa 22.3) segfaults on an empty list,
 *                            which is what our layer returns for an index out of range
 * Example: webgpuPinningEnv(0, '/srv/tcd/build/vulkan-layer')
 *   -> { env: { VK_ADD_LAYER_PATH: '/srv/tcd/build/vulkan-layer', VK_LOADER_LAYERS_ENABLE: 'VK_LAYER_TCD_device_select',
 *               TCD_VULKAN_DEVICE: '0', NODEVICE_SELECT: '1' } }
 */
export function webgpuPinningEnv(device: number, layerDir: string | null, opts: PinningOptions = {}): PinningEnv {
  const platform = opts.platform ?? process.platform;
  if (!Number.isInteger(device) || device < 0) return { error: `GPU index must be an integer >= 0, got ${device}` };
  if (platform !== 'linux')
    return { error: `WebGPU GPU pinning uses a Vulkan layer built for Linux; this is ${platform}` };
  if (layerDir === null || layerDir === '') {
    return {
      error: `the Vulkan device-select layer is not built (run scripts/build-vulkan-layer.sh); WebGPU would use Dawn's default GPU instead of GPU ${device}`,
    };
  }
  if (layerDir.includes(':'))
    return { error: `Vulkan layer directory "${layerDir}" contains ':', the loader's path separator` };
  const base = opts.base ?? {};
  return {
    env: {
      VK_ADD_LAYER_PATH: joinUnique([layerDir], base.VK_ADD_LAYER_PATH, ':'),
      VK_LOADER_LAYERS_ENABLE: joinUnique(splitList(base.VK_LOADER_LAYERS_ENABLE, ','), VULKAN_LAYER_NAME, ','),
      TCD_VULKAN_DEVICE: String(device),
      NODEVICE_SELECT: '1',
    },
  };
}

/**
 * The built layer's directory under `projectRoot` when both the library and its manifest are there, else null.
 * Example: findVulkanLayer('/srv/tcd') -> '/srv/tcd/build/vulkan-layer' (after scripts/build-vulkan-layer.sh)
 */
export function findVulkanLayer(projectRoot: string): string | null {
  const dir = join(projectRoot, VULKAN_LAYER_BUILD_DIR);
  return existsSync(join(dir, VULKAN_LAYER_LIBRARY)) && existsSync(join(dir, VULKAN_LAYER_MANIFEST)) ? dir : null;
}

/**
 * Writes the variables into `target` (default process.env). On the main thread that reaches the C environment the
 * Vulkan loader reads; inside a worker thread it would not, so this refuses there rather than pin nothing silently.
 */
export function applyPinningEnv(env: Record<string, string>, target: NodeJS.ProcessEnv = process.env): void {
  if (target === process.env && !isMainThread) {
    throw new Error(
      'WebGPU GPU pinning must set the environment on the main thread: process.env writes in a worker thread do not reach the Vulkan loader',
    );
  }
  for (const [k, v] of Object.entries(env)) target[k] = v;
}

function splitList(v: string | undefined, sep: string): string[] {
  return (v ?? '')
    .split(sep)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** `first` then the items of `rest` (a sep-separated string or list), without repeats or empty items. */
function joinUnique(first: string[], rest: string | string[] | undefined, sep: string): string {
  const more = typeof rest === 'string' ? rest.split(sep) : (rest ?? []);
  return [...new Set([...first, ...more].filter(Boolean))].join(sep);
}
