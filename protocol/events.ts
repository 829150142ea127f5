/**
 * Every websocket event tcd-studio sends, as typed values (ComfyUI's names and shapes). No other module spells an
 * event name: they build events with these constructors, so the wire format lives in one place.
 */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface StatusData { status: { exec_info: { queue_remaining: number } }; sid?: string }

export type ServerEvent =
  | { type: 'status'; data: StatusData }
  | { type: 'execution_start'; data: { prompt_id: string; timestamp: number } }
  | { type: 'execution_cached'; data: { nodes: string[]; prompt_id: string; timestamp: number } }
  | { type: 'executing'; data: { node: string | null; display_node?: string; prompt_id: string } }
  | { type: 'progress'; data: { value: number; max: number; prompt_id: string; node: string } }
  | { type: 'executed'; data: { node: string; display_node: string; output: Record<string, unknown>; prompt_id: string } }
  | { type: 'execution_success'; data: { prompt_id: string; timestamp: number } }
  | { type: 'execution_error'; data: ExecutionErrorData }
  | { type: 'execution_interrupted'; data: { prompt_id: string; node_id: string; node_type: string; executed: string[]; timestamp: number } }
  | { type: 'progress_state'; data: { prompt_id: string; nodes: Record<string, NodeProgressState> } }
  | { type: 'feature_flags'; data: Record<string, unknown> };

/** One node's entry in `progress_state` (ComfyUI's shape). */
export interface NodeProgressState {
  value: number;
  max: number;
  state: 'pending' | 'running' | 'finished' | 'error';
  node_id: string;
  prompt_id: string;
  display_node_id: string;
  parent_node_id: string | null;
  real_node_id: string;
}

export interface ExecutionErrorData {
  prompt_id: string;
  node_id: string;
  node_type: string;
  executed: string[];
  exception_message: string;
  exception_type: string;
  traceback: string[];
  current_inputs: Record<string, unknown>;
  current_outputs: Record<string, unknown>;
  timestamp: number;
}

export type EventType = ServerEvent['type'];
export type EventData<T extends EventType> = Extract<ServerEvent, { type: T }>['data'];

/** Build an event; the only place event names are written. */
export function event<T extends EventType>(type: T, data: EventData<T>): ServerEvent {
  return { type, data } as ServerEvent;
}

/** Binary websocket frame types (first 4 bytes, big-endian). */
export const BINARY_PREVIEW_IMAGE = 1;
export const BINARY_PREVIEW_WITH_METADATA = 4;
export const PREVIEW_JPEG = 1;
export const PREVIEW_PNG = 2;

export interface PreviewImage { format: 'jpeg' | 'png'; bytes: Uint8Array }

/** Frame type 1: [u32 BE 1][u32 BE image type][image bytes]. */
export function previewFrame(img: PreviewImage): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(BINARY_PREVIEW_IMAGE, 0);
  head.writeUInt32BE(img.format === 'jpeg' ? PREVIEW_JPEG : PREVIEW_PNG, 4);
  return Buffer.concat([head, Buffer.from(img.bytes)]);
}

/** Frame type 4: [u32 BE 4][u32 BE json length][json metadata][image bytes]. */
export function previewFrameWithMetadata(img: PreviewImage, meta: { node_id: string; prompt_id: string }): Buffer {
  const json = Buffer.from(JSON.stringify({
    node_id: meta.node_id, prompt_id: meta.prompt_id, display_node_id: meta.node_id, parent_node_id: null,
    real_node_id: meta.node_id, image_type: img.format === 'jpeg' ? 'image/jpeg' : 'image/png',
  }));
  const head = Buffer.alloc(8);
  head.writeUInt32BE(BINARY_PREVIEW_WITH_METADATA, 0);
  head.writeUInt32BE(json.length, 4);
  return Buffer.concat([head, json, Buffer.from(img.bytes)]);
}
