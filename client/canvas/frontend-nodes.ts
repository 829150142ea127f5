// Nodes that live only in the editor, as in ComfyUI: Note (a text box) and Reroute (a link waypoint). Both
// converters drop them (a Reroute's consumers are wired to whatever feeds it), so they never reach the server.
import { LGraphNode, LiteGraph } from '@comfyorg/litegraph';
import { addTextareaWidget } from './dom-widgets.js';

export const FRONTEND_NODES: Record<string, { title: string; category: string; description: string }> = {
  Note: { title: 'Note', category: 'utils', description: 'A text note on the canvas; not run.' },
  Reroute: { title: 'Reroute', category: 'utils', description: 'A waypoint that passes one link through.' },
};

/** The Note class; `onEdit(typing)` as for other widgets. */
export function noteNodeClass(onEdit: (typing?: boolean) => void): typeof LGraphNode {
  class Note extends LGraphNode {
    static override title = 'Note';
    constructor(title?: string) {
      super(title ?? 'Note');
      this.serialize_widgets = true;
      this.color = '#432';
      this.bgcolor = '#653';
      addTextareaWidget(this, 'text', '', onEdit);
      this.size = [320, 140];
    }
  }
  return Note as unknown as typeof LGraphNode;
}

/** The Reroute class: one input and one output of any type; the output takes the type of what comes in. */
export function rerouteNodeClass(): typeof LGraphNode {
  class Reroute extends LGraphNode {
    static override title = 'Reroute';
    // litegraph reads the title mode from the class: a reroute is a dot with two sockets, no title bar
    static title_mode = LiteGraph.NO_TITLE;
    constructor(title?: string) {
      super(title ?? 'Reroute');
      this.addInput('', '*');
      this.addOutput('', '*');
      this.size = [75, 26];
    }

    override onConnectionsChange(): void {
      const link = this.inputs[0]?.link != null ? this.graph?._links.get(this.inputs[0].link) : undefined;
      const type = link?.type ?? '*';
      this.outputs[0].type = type as never;
      this.outputs[0].name = type === '*' ? '' : String(type);
    }
  }
  return Reroute as unknown as typeof LGraphNode;
}
