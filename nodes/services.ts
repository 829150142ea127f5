/**
 * What nodes may use from their host: folders and the model engine. The executor passes this through untouched;
 * nodes never see HTTP.
 */
import type { ModelFolders } from '../server/storage/model-folders.js';

export interface NodeServices {
  dirs: { output: string; input: string; temp: string };
  models: ModelFolders;
  /** the model engine, created on first use (import type from server/engine/engine.ts) */
  engine(): import('../server/engine/engine.js').Engine;
  /** send per-step previews from samplers */
  previews: boolean;
  /**
   * how previews are drawn (--preview-method): latent2rgb, or taesd = the family's TAESD decoder from
   * models/vae_approx when present (latent2rgb otherwise, as ComfyUI); default latent2rgb
   */
  previewMethod?: 'latent2rgb' | 'taesd';
}
