// UI workflow (0.4) -> API prompt in the editor: the protocol's converter (protocol/workflow/ui-to-api.ts, pure and
// bundled by Vite) run leniently over the object_info the editor fetched, with widgets read in the same order the
// canvas builds them (widget-spec.ts), so editor, canvas and server agree.
import type { ApiPrompt, NodeInfo, ObjectInfo, Workflow } from './types.js';
import { describeInputs } from './widget-spec.js';
import { uiWorkflowToPrompt, type ClassSchema, type SchemaLookup } from '../../protocol/workflow/ui-to-api.js';

/** What conversion needs from one object_info entry: ordered inputs, widget or socket, companion values. */
function classSchema(info: NodeInfo): ClassSchema {
  return {
    displayName: info.display_name,
    inputs: describeInputs(info).map((d) => ({
      name: d.name,
      widget: !!d.widget,
      controlAfterGenerate: !!d.widget?.controlAfterGenerate,
      imageUpload: info.input[d.optional ? 'optional' : 'required']?.[d.name]?.[1]?.image_upload === true,
    })),
  };
}

/**
 * The converter's view of an object_info answer, one class at a time.
 * @example schemaFromObjectInfo(info)('KSampler')?.inputs.map((i) => i.name) // ['model', 'seed', 'steps', ...]
 */
export function schemaFromObjectInfo(objectInfo: ObjectInfo): SchemaLookup {
  const schemas = new Map<string, ClassSchema>();
  return (type) => {
    if (!schemas.has(type) && Object.prototype.hasOwnProperty.call(objectInfo, type))
      schemas.set(type, classSchema(objectInfo[type]));
    return schemas.get(type);
  };
}

/**
 * Converts a UI-format workflow to an API prompt. Lenient: what cannot be converted is left for the server to judge.
 * @example const prompt = workflowToPrompt(workflow, await (await fetch('/object_info')).json());
 *          // prompt['3'] -> { class_type: 'KSampler', inputs: { seed: 5, model: ['4', 0], ... }, _meta: { title } }
 */
export function workflowToPrompt(workflow: Workflow, objectInfo: ObjectInfo): ApiPrompt {
  return uiWorkflowToPrompt(workflow, schemaFromObjectInfo(objectInfo), { strict: false });
}

/**
 * The body of POST /prompt, with the workflow attached so SaveImage embeds it in the PNG.
 * @example await fetch('/prompt', { method: 'POST', body: JSON.stringify(queueBody(wf, info, clientId)) })
 */
export function queueBody(workflow: Workflow, objectInfo: ObjectInfo, clientId: string) {
  return {
    client_id: clientId,
    prompt: workflowToPrompt(workflow, objectInfo),
    extra_data: { extra_pnginfo: { workflow } },
  };
}
