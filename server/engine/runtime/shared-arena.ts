/**
 * `--shared-arena` (TCD_SHARED_ARENA): one ONNX Runtime memory arena for all of the engine's sessions on its provider,
 * in place of one arena per session. Every session grows its own arena to its largest run and keeps it, so a
 * pipeline's peak memory is the sum of its sessions' peaks (text encoders, UNet, VAE), though they never run at once.
 * An arena registered with the process's ONNX Runtime environment (native/ort-cuda, shared_arena.c) is used by every
 * session created with SHARED_ARENA_SESSION_CONFIG, and the peak becomes the largest session's.
 * CUDA: device memory of the engine's GPU (its arena growth follows arena_extend_strategy / gpu_mem_limit of
 * --cuda-options); CPU: host memory (the tests' twin). WebGPU sessions have no ONNX Runtime arena.
 * Example:
 *   shareArena(ortPackageDir, 'cuda', 0, parseCudaOptions('arena_extend_strategy=kSameAsRequested'), addonPath);
 *   InferenceSession.create(model, { ...options, ...SHARED_ARENA_SESSION_CONFIG });
 */
import { libonnxruntimeOf, loadOrtCudaAddon, optionsText, type CudaOptionEntries } from './cuda-options.js';

/** The session config entry that makes a session take the environment's allocator for its device. */
export const SHARED_ARENA_SESSION_CONFIG = { extra: { session: { use_env_allocators: '1' } } } as const;

interface SharedArenaAddon {
  shareArena(
    lib: string,
    ep: 'cuda' | 'cpu',
    deviceId: number,
    arena: string,
    providerOptions: string,
    logSeverity: number,
  ): string;
}

/**
 * The arena's own settings (OrtArenaCfg) from the CUDA options: how it grows (0 = next power of two, ONNX Runtime's
 * default; 1 = as requested) and its cap. Unset keys keep ONNX Runtime's defaults.
 */
export function arenaConfigOf(cudaOptions: CudaOptionEntries): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [key, value] of cudaOptions) {
    if (key === 'arena_extend_strategy') out.push([key, value === 'kSameAsRequested' ? '1' : '0']);
    if (key === 'gpu_mem_limit') out.push(['max_mem', value]);
  }
  return out;
}

/**
 * Registers the shared arena for `ep` with the process's ONNX Runtime environment (the onnxruntime-node package at
 * `ortPackageDir` must be imported), at the process's log severity (0 verbose ... 3 errors only). A second call for
 * the same memory (an engine started again in this process) keeps the first arena. Returns the ONNX Runtime release;
 * throws with the reason (no helper built, an ONNX Runtime older than 1.15 for CUDA).
 */
export function shareArena(
  ortPackageDir: string,
  ep: 'cuda' | 'cpu',
  deviceId: number,
  cudaOptions: CudaOptionEntries,
  addonPath: string,
  logSeverity: number,
): string {
  const addon = loadOrtCudaAddon<SharedArenaAddon>(addonPath, '--shared-arena');
  if (typeof addon.shareArena !== 'function') {
    throw new Error(`--shared-arena: the native helper ${addonPath} predates it: rebuild it (npm run build:ort-cuda)`);
  }
  const lib = libonnxruntimeOf(ortPackageDir, '--shared-arena');
  const arena = optionsText(ep === 'cuda' ? arenaConfigOf(cudaOptions) : []);
  return addon.shareArena(lib, ep, deviceId, arena, ep === 'cuda' ? optionsText(cudaOptions) : '', logSeverity);
}
