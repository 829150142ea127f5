// What the canvas shows about execution, keyed by node id. Lives outside the litegraph nodes because undo and
// loading recreate node objects; drawing code looks the node up here each frame.

export interface NodeError { message: string; inputs: Record<string, string> }

export class RuntimeState {
  running: string | null = null;
  progress = new Map<string, number>();
  images = new Map<string, HTMLImageElement[]>();
  errors = new Map<string, NodeError>();
  /** Called when something changed that the canvas should redraw. */
  onChange: () => void = () => {};

  setImages(nodeId: string, urls: string[]): void {
    const imgs = urls.map((u) => {
      const img = new Image();
      img.onload = () => this.onChange();
      img.src = u;
      return img;
    });
    this.images.set(nodeId, imgs);
    this.onChange();
  }
}

export const runtime = new RuntimeState();
