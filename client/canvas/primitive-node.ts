// ComfyUI's frontend-only "Primitive" node: one output that, once linked to a widget input, adopts that input's
// type and a copy of its widget, so one value can drive several nodes. It never reaches the server: both UI->API
// converters (client/graph/to-api.ts, server/workflow/convert.ts) replace a link from it by widgets_values[0].
import { LGraphNode, LiteGraph, type LGraph } from '@comfyorg/litegraph';
import type { INodeInputSlot, LLink } from '@comfyorg/litegraph';
import { CONTROL_WIDGET, setConverted } from './widget-inputs.js';
import { addTextareaWidget } from './dom-widgets.js';

export const PRIMITIVE_TYPE = 'PrimitiveNode';
const ANY_NAME = 'connect to widget input';

/**
 * The Primitive node class; `onEdit` runs after its widget changes (undo checkpoint + autosave).
 * @example LiteGraph.registerNodeType(PRIMITIVE_TYPE, primitiveNodeClass(() => editor.scheduleCheckpoint()));
 */
export function primitiveNodeClass(onEdit: () => void): typeof LGraphNode {
  class PrimitiveNode extends LGraphNode {
    static override title = 'Primitive';
    /** widgets_values read from a file before the target node exists; applied on adopt(). */
    private pendingValues: unknown[] | null = null;

    constructor(title?: string) {
      super(title ?? 'Primitive');
      this.serialize_widgets = true;
      this.addOutput(ANY_NAME, '*');
    }

    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
    override onConfigure(data: any): void {
      // Already adopted while litegraph replayed the links: configure() has applied the values itself.
      if (Array.isArray(data.widgets_values) && !this.widgets?.length) this.pendingValues = data.widgets_values;
    }

    // Only widget inputs can take a primitive; once typed, only inputs of the same type.
    override onConnectOutput(_slot: number, _type: unknown, input: INodeInputSlot): boolean {
      if (!(input as INodeInputSlot).widget) return false;
      const t = this.outputs[0].type;
      return t === '*' || t === input.type;
    }

    override onConnectionsChange(
      type: number,
      _index: number,
      connected: boolean,
      link: LLink | null | undefined,
    ): void {
      if (type !== LiteGraph.OUTPUT || !this.graph) return;
      if (connected && link) this.adopt(link);
      else if (!this.outputs[0].links?.length) this.reset();
    }

    /** Takes the type and a widget copy from the input at the link's far end (no-op if already typed). */
    adopt(link: Pick<LLink, 'target_id' | 'target_slot'>): void {
      const target = this.graph?.getNodeById(link.target_id);
      const input = target?.inputs[link.target_slot];
      const source = input?.widget && target?.widgets?.find((w) => w.name === input.widget!.name);
      if (!target || !input || !source || this.widgets?.length) return;
      this.outputs[0].type = input.type;
      this.outputs[0].name = String(input.type);
      (this.outputs[0] as { widget?: { name: string } }).widget = { name: input.widget!.name };
      const values = this.pendingValues ?? [source.value];
      this.pendingValues = null;
      if (source.type === 'customtext') addTextareaWidget(this, 'value', String(values[0] ?? ''), () => onEdit());
      else
        this.addWidget(source.type as never, 'value', values[0] as never, () => onEdit(), {
          ...(source.options as object),
        } as never);
      const sourceIndex = target.widgets!.indexOf(source);
      const control = target.widgets![sourceIndex + 1];
      if (control?.name === CONTROL_WIDGET) {
        this.addWidget('combo', CONTROL_WIDGET, (values[1] ?? control.value) as never, () => onEdit(), {
          ...(control.options as object),
        } as never);
      }
      // The target shows a socket for this input from now on (ComfyUI's converted widget).
      setConverted(target, input.widget!.name, true);
      this.title = input.widget!.name;
      this.setSize(this.computeSize());
    }

    private reset(): void {
      if (!this.widgets?.length) return;
      this.widgets.length = 0;
      this.outputs[0].type = '*';
      this.outputs[0].name = ANY_NAME;
      delete (this.outputs[0] as { widget?: unknown }).widget;
      this.setSize(this.computeSize());
    }
  }
  return PrimitiveNode as unknown as typeof LGraphNode;
}

/** After a graph was configured from a file or an undo snapshot: primitives pick up their targets' widgets. */
export function adoptPrimitives(graph: LGraph): void {
  for (const node of graph._nodes) {
    if (node.type !== PRIMITIVE_TYPE) continue;
    const linkId = node.outputs[0]?.links?.[0];
    const link = linkId != null ? graph._links.get(linkId) : undefined;
    if (link) (node as unknown as { adopt(l: LLink): void }).adopt(link);
  }
}

/**
 * Adds a Primitive left of `node`, linked to the input of widget `name` (double-click on a converted input).
 * @example createPrimitiveFor(sampler, 'seed');
 */
export function createPrimitiveFor(node: LGraphNode, name: string): LGraphNode | null {
  const slot = node.inputs.findIndex((s) => s.widget?.name === name);
  if (slot < 0 || !node.graph) return null;
  const p = LiteGraph.createNode(PRIMITIVE_TYPE);
  if (!p) return null;
  const pos = node.getInputPos(slot);
  node.graph.add(p);
  p.connect(0, node, slot);
  p.pos = [node.pos[0] - p.size[0] - 60, pos[1] - 20];
  return p;
}
