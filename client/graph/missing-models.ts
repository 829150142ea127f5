// Which model files a workflow asks for that the server does not list: loader combos (ckpt_name, lora_name, ...)
// whose saved value is not among object_info's options. Muted and bypassed nodes need nothing.
import type { ObjectInfo, Workflow } from './types.js';
import { MODE_BYPASS, MODE_NEVER } from './types.js';
import { describeInputs, widgetValuesByName } from './widget-spec.js';

export interface MissingModel {
  nodeId: string;
  nodeType: string;
  input: string;
  file: string;
}

/**
 * @example missingModels(await api.workflow('tcd-img2img.json'), info)
 *          // [{ nodeId: '1', nodeType: 'CheckpointLoaderSimple', input: 'ckpt_name', file: 'sd_xl_base_1.0.safetensors' }]
 */
export function missingModels(wf: Workflow, info: ObjectInfo): MissingModel[] {
  const out: MissingModel[] = [];
  for (const node of wf.nodes ?? []) {
    const cls = info[node.type];
    if (!cls || node.mode === MODE_NEVER || node.mode === MODE_BYPASS) continue;
    const described = describeInputs(cls);
    const { values } = widgetValuesByName(described, node.widgets_values);
    for (const d of described) {
      if (d.widget?.kind !== 'combo' || !/_name$/.test(d.name)) continue;
      const v = values[d.name];
      const linked = node.inputs?.some((i) => i.name === d.name && i.link != null);
      if (typeof v === 'string' && v && !linked && !(d.widget.options ?? []).includes(v)) {
        out.push({ nodeId: String(node.id), nodeType: node.type, input: d.name, file: v });
      }
    }
  }
  return out;
}

/**
 * A one-line summary of what a workflow does, for templates without a written description.
 * @example describeWorkflow(wf) // 'image to image · TCD Sampler, 4 steps · 1 LoRA'
 */
export function describeWorkflow(wf: Workflow): string {
  const nodes = (wf.nodes ?? []).filter((n) => n.mode !== MODE_NEVER && n.mode !== MODE_BYPASS);
  const has = (t: RegExp) => nodes.filter((n) => t.test(n.type));
  const parts: string[] = [has(/^LoadImage/).length ? 'image to image' : 'text to image'];
  const latent = has(/EmptyLatentImage/)[0]?.widgets_values;
  if (Array.isArray(latent)) parts.push(`${latent[0]}×${latent[1]}`);
  const sampler = has(/Sampler/)[0];
  if (sampler) {
    const steps = Array.isArray(sampler.widgets_values)
      ? sampler.widgets_values.find((v, i) => i > 0 && Number.isInteger(v) && (v as number) < 200)
      : undefined;
    parts.push(`${sampler.title ?? sampler.type}${steps !== undefined ? `, ${steps} steps` : ''}`);
  }
  const loras = has(/Lora/).length;
  if (loras) parts.push(`${loras} LoRA${loras > 1 ? 's' : ''}`);
  return parts.join(' · ');
}
