// What the canvas shows about execution, keyed by node id. Lives outside the litegraph nodes because undo and
// loading recreate node objects; drawing code looks the node up here each frame.

export interface NodeError {
  message: string;
  inputs: Record<string, string>;
}

export class RuntimeState {
  running: string | null = null;
  progress = new Map<string, number>();
  images = new Map<string, HTMLImageElement[]>();
  errors = new Map<string, NodeError>();
  /** Live sampler previews (latent2rgb JPEGs); the last frame stays until the next prompt starts. */
  previews = new Map<string, HTMLImageElement>();
  private previewGeneration = 0;
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

  setPreview(nodeId: string, url: string): void {
    const img = new Image();
    const generation = this.previewGeneration;
    // Swap only once decoded, so the panel never flashes empty between steps; a frame decoded after the prompt
    // ended is dropped.
    img.onload = () => {
      if (generation !== this.previewGeneration) return;
      this.previews.set(nodeId, img);
      this.onChange();
    };
    img.src = url;
  }

  clearPreviews(): void {
    this.previewGeneration++;
    if (!this.previews.size) return;
    this.previews.clear();
    this.onChange();
  }
}

export const runtime = new RuntimeState();
