/**
 * UI-format workflow (litegraph, version 0.4) to API-format prompt on the server (ComfyUI only does this in its
 * frontend): the shared converter in ./ui-to-api.ts, run strictly over this server's node definitions.
 * @example const prompt = uiToApi(JSON.parse(text), createRegistry()); // throws WorkflowConversionError on bad input
 */
import { isWidgetType, type NodeDefinition, type Registry } from '../executor/node-definition.js';
import type { Prompt } from '../executor/prompt.js';
import { MAX_PROMPT_NODES } from '../executor/validate.js';
import { uiWorkflowToPrompt, type ClassSchema, type UiWorkflow } from '../../protocol/workflow/ui-to-api.js';

export {
  WorkflowConversionError,
  MODE_MUTED,
  MODE_BYPASS,
  type UiNode,
  type UiLink,
  type UiWorkflow,
} from '../../protocol/workflow/ui-to-api.js';

export function isUiWorkflow(v: unknown): v is UiWorkflow {
  return (
    !!v && typeof v === 'object' && Array.isArray((v as UiWorkflow).nodes) && Array.isArray((v as UiWorkflow).links)
  );
}

/**
 * What conversion needs from a node definition: its inputs in order, which take a widgets_values slot, and which
 * are followed by a frontend-only companion value.
 * @example schemaFromDefinition(registry.get('KSampler')!).inputs[1] // { name: 'seed', widget: true, controlAfterGenerate: true, ... }
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
export function schemaFromDefinition(def: NodeDefinition<any>): ClassSchema {
  return {
    displayName: def.displayName,
    inputs: def.inputs.map((spec) => ({
      name: spec.name,
      widget: isWidgetType(spec.type) && !spec.options.forceInput,
      controlAfterGenerate: !!spec.options.control_after_generate,
      imageUpload: !!spec.options.image_upload,
    })),
  };
}

/** Converts strictly: unknown classes, links from missing nodes and loops throw WorkflowConversionError. */
export function uiToApi<S>(wf: UiWorkflow, registry: Registry<S>): Prompt {
  const schemas = new Map<string, ClassSchema>();
  return uiWorkflowToPrompt(
    wf,
    (type) => {
      const def = registry.get(type);
      if (def && !schemas.has(type)) schemas.set(type, schemaFromDefinition(def));
      return schemas.get(type);
    },
    { strict: true, maxNodes: MAX_PROMPT_NODES },
  );
}
