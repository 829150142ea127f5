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
}
