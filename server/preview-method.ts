/**
 * ComfyUI's --preview-method: whether samplers send per-step preview frames, and how they are made. `taesd` decodes
 * previews with the family's TAESD decoder when models/vae_approx holds it (taesd_decoder.* / taesdxl_decoder.*, as
 * ComfyUI) and falls back to latent2rgb otherwise; `auto` is latent2rgb (ComfyUI's auto). The default keeps previews
 * on (tcd-studio's behaviour before the flag).
 */
export const PREVIEW_METHODS = ['none', 'auto', 'latent2rgb', 'taesd'] as const;
export type PreviewMethod = (typeof PREVIEW_METHODS)[number];
export const DEFAULT_PREVIEW_METHOD: PreviewMethod = 'latent2rgb';

/** Parses the flag's value; throws naming the accepted values. */
export function parsePreviewMethod(v: string | undefined): PreviewMethod {
  if (v === undefined || v === '') return DEFAULT_PREVIEW_METHOD;
  const m = v.trim().toLowerCase();
  if (!(PREVIEW_METHODS as readonly string[]).includes(m)) {
    throw new Error(`--preview-method must be one of ${PREVIEW_METHODS.join(', ')} (got ${JSON.stringify(v)})`);
  }
  return m as PreviewMethod;
}

/** Whether samplers send preview frames, and a note for the log when the method is substituted. */
export function previewSetting(method: PreviewMethod): { previews: boolean; note?: string } {
  if (method === 'none') return { previews: false };
  if (method === 'taesd')
    return {
      previews: true,
      note: 'preview method taesd: previews use models/vae_approx/taesd(xl)_decoder.safetensors when present, else latent2rgb',
    };
  return { previews: true };
}
