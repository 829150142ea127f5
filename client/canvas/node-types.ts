// Builds litegraph node classes from GET /object_info: typed sockets, widgets per input spec, seed controls.
// Every widget also has an input slot (`widget: {name}`), so any widget can take a link instead (litegraph 0.17
// shows the slot while a compatible link is dragged and greys out the widget once linked).
import { LGraphNode, LiteGraph } from '@comfyorg/litegraph';
import type { IWidget } from '@comfyorg/litegraph';
import type { NodeInfo, ObjectInfo } from '../graph/types.js';
import { describeInputs, SEED_CONTROLS, widgetValuesByName, type InputDescriptor } from '../graph/widget-spec.js';
import { drawNodeExtras } from './node-draw.js';
import { addTextareaWidget } from './dom-widgets.js';
import { noteNodeClass, rerouteNodeClass } from './frontend-nodes.js';
import { addUploadWidget, IMAGE_NODE_MIN, imageUploadInputs, syncInputImage } from './image-inputs.js';
import {
  applyConverted,
  CONTROL_WIDGET,
  convertedWidgets,
  drawConvertedInputs,
  widgetInputMenu,
} from './widget-inputs.js';
import { createPrimitiveFor, PRIMITIVE_TYPE, primitiveNodeClass } from './primitive-node.js';

export { CONTROL_WIDGET };

function decimals(step: number | undefined): number {
  if (!step || step >= 1) return 0;
  return Math.min(6, Math.max(0, Math.ceil(-Math.log10(step) - 1e-9)));
}

function addWidgetFor(node: LGraphNode, d: InputDescriptor, onEdit: (typing?: boolean) => void): void {
  const w = d.widget!;
  switch (w.kind) {
    case 'number': {
      const precision = w.integer ? 0 : decimals(w.round ?? w.step);
      node.addWidget(
        'number',
        d.name,
        w.default as number,
        (v: number) => {
          // Snap to the spec's grid, as ComfyUI does, so values the server validates stay in range.
          const widget = node.widgets!.find((x) => x.name === d.name)!;
          const step = w.integer ? (w.step ?? 1) : 0;
          let value = w.integer ? Math.round(v) : Number(v.toFixed(Math.max(precision, 2)));
          if (step > 1) value = Math.round((value - (w.min ?? 0)) / step) * step + (w.min ?? 0);
          widget.value = value;
          onEdit();
        },
        { min: w.min, max: w.max, step2: w.step, precision },
      );
      if (w.controlAfterGenerate) {
        node.addWidget('combo', CONTROL_WIDGET, 'randomize', () => onEdit(), { values: [...SEED_CONTROLS] });
      }
      break;
    }
    case 'combo':
      node.addWidget('combo', d.name, w.default as string, () => onEdit(), { values: w.options ?? [] });
      if (w.imageUpload) addUploadWidget(node, d.name);
      break;
    case 'toggle':
      node.addWidget('toggle', d.name, Boolean(w.default), () => onEdit(), {});
      break;
    case 'text':
      if (w.multiline) addTextareaWidget(node, d.name, String(w.default ?? ''), onEdit);
      else node.addWidget('text', d.name, String(w.default ?? ''), () => onEdit(false), {});
      break;
  }
}

/** Adds widget input slots a loaded workflow lacks (older files list only linked ones). */
function ensureWidgetSlots(node: LGraphNode, described: InputDescriptor[]): void {
  for (const d of described) {
    if (!d.widget || node.inputs.some((i) => i.name === d.name)) continue;
    node.addInput(d.name, d.type, { widget: { name: d.name } });
  }
}

/**
 * Registers one litegraph node type per object_info class (replacing earlier registrations).
 * `onEdit` runs after any widget edit (undo checkpoint + autosave); `typing` marks a keystroke in a textarea.
 * @example registerNodeTypes(await api.objectInfo(), () => editor.checkpoint());
 */
export function registerNodeTypes(info: ObjectInfo, onEdit: (typing?: boolean) => void): void {
  LiteGraph.clearRegisteredTypes();
  const classes: [string, typeof LGraphNode, string][] = Object.entries(info).map(([type, nodeInfo]) => [
    type,
    makeClass(type, nodeInfo, onEdit),
    nodeInfo.category ?? 'other',
  ]);
  if (!info[PRIMITIVE_TYPE]) classes.push([PRIMITIVE_TYPE, primitiveNodeClass(onEdit), 'utils']);
  if (!info.Note) classes.push(['Note', noteNodeClass(onEdit), 'utils']);
  if (!info.Reroute) classes.push(['Reroute', rerouteNodeClass(), 'utils']);
  for (const [type, cls, category] of classes) {
    LiteGraph.registerNodeType(type, cls);
    // registerNodeType derives `category` from a "path/Type" name (empty here): set it afterwards, as ComfyUI does,
    // or the canvas menu's Add Node lists nothing.
    (cls as unknown as { category: string }).category = category;
  }
}

function makeClass(type: string, info: NodeInfo, onEdit: (typing?: boolean) => void): typeof LGraphNode {
  const described = describeInputs(info);
  const imageInputsOf = imageUploadInputs(info);
  class ApiNode extends LGraphNode {
    static override title = info.display_name ?? type;
    static nodeInfo = info;
    constructor(title?: string) {
      super(title ?? info.display_name ?? type);
      this.serialize_widgets = true;
      for (const d of described) if (!d.widget) this.addInput(d.name, d.type);
      for (const d of described) {
        if (!d.widget) continue;
        addWidgetFor(this, d, onEdit);
        this.addInput(d.name, d.type, { widget: { name: d.name } });
      }
      info.output.forEach((t, i) => this.addOutput(info.output_name?.[i] ?? t, t));
      this.size = this.computeSize();
      if (type === 'SaveImage' || type === 'PreviewImage')
        this.size = [Math.max(this.size[0], 320), Math.max(this.size[1], 340)];
      if (imageInputsOf.length)
        this.size = [Math.max(this.size[0], IMAGE_NODE_MIN[0]), Math.max(this.size[1], IMAGE_NODE_MIN[1])];
      // Highlight strokes drawn by litegraph around the node body.
      this.strokeStyles.running = function (this: LGraphNode) {
        return rt().running === String(this.id) ? { color: '#2ecc40', lineWidth: 3, padding: 6 } : undefined;
      };
    }

    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped boundary (JSON rows, DOM/ws events, services generic)
    override onConfigure(data: any): void {
      ensureWidgetSlots(this, described);
      // Re-apply widget values by name: tolerant of files saved without the seed's control value.
      const { values, controls } = widgetValuesByName(described, data.widgets_values);
      for (const w of (this.widgets ?? []) as IWidget[]) {
        if (w.name in values) w.value = values[w.name] as never;
      }
      for (const [name, control] of Object.entries(controls)) {
        const i = this.widgets!.findIndex((w) => w.name === name);
        const next = this.widgets![i + 1];
        if (next?.name === CONTROL_WIDGET) next.value = control as never;
      }
      for (const w of this.widgets ?? []) {
        if (w.name === CONTROL_WIDGET && !SEED_CONTROLS.includes(w.value as never)) w.value = 'fixed' as never;
      }
      applyConverted(this);
    }

    override getExtraMenuOptions() {
      return widgetInputMenu(this);
    }

    // Double-click on a converted input: a Primitive node to drive it (ComfyUI's shortcut).
    override onInputDblClick(index: number): void {
      const name = this.inputs[index]?.widget?.name;
      if (name && convertedWidgets(this).includes(name) && this.inputs[index].link == null)
        createPrimitiveFor(this, name);
    }

    // Runs before litegraph draws the node's outline and progress bar, so both reflect the current state.
    override onDrawBackground(): void {
      const id = String(this.id);
      this.progress = rt().progress.get(id);
      this.has_errors = rt().errors.has(id);
      for (const name of imageInputsOf) syncInputImage(this, name);
    }

    override onDrawForeground(ctx: CanvasRenderingContext2D): void {
      drawConvertedInputs(this, ctx);
      drawNodeExtras(this, ctx, rt());
    }
  }
  return ApiNode as unknown as typeof LGraphNode;
}

import { runtime } from './runtime-state.js';
const rt = () => runtime;
