/**
 * Every websocket event tcd-studio sends, as typed values (ComfyUI's names and shapes), and the messages a client
 * sends back. The server builds events with `event()`; clients (the editor, the typed client) read `ServerMessage`s.
 * No other module spells an event name, so the wire format lives in one place. Browser-safe: no Node imports.
 * To add an event: one member in `ServerEvent`; to add a client message: one member in `ClientMessage`.
 */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface StatusData {
  status: { exec_info: { queue_remaining: number } };
  sid?: string;
}

export type ServerEvent =
  | { type: 'status'; data: StatusData }
  | { type: 'execution_start'; data: { prompt_id: string; timestamp: number } }
  | { type: 'execution_cached'; data: { nodes: string[]; prompt_id: string; timestamp: number } }
  | { type: 'executing'; data: { node: string | null; display_node?: string; prompt_id: string } }
  | { type: 'progress'; data: { value: number; max: number; prompt_id: string; node: string } }
  | {
      type: 'executed';
      data: { node: string; display_node: string; output: Record<string, unknown>; prompt_id: string };
    }
  | { type: 'execution_success'; data: { prompt_id: string; timestamp: number } }
  | { type: 'execution_error'; data: ExecutionErrorData }
  | {
      type: 'execution_interrupted';
      data: { prompt_id: string; node_id: string; node_type: string; executed: string[]; timestamp: number };
    }
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

/** A text frame as a client receives it: an event, plus `seq` when the server logged it (replay with `since=`). */
export type ServerMessage = ServerEvent & { seq?: number };

/** What a client announces in its first message (ComfyUI's feature_flags). */
export interface FeatureFlags {
  supports_preview_metadata?: boolean;
  [flag: string]: unknown;
}

/** Text frames a client sends to the server. */
export type ClientMessage = { type: 'feature_flags'; data: FeatureFlags };

/** Parses a client's text frame; null when it is not a message this protocol knows. */
export function parseClientMessage(raw: string): ClientMessage | null {
  try {
    const msg = JSON.parse(raw);
    if (msg?.type === 'feature_flags' && msg.data && typeof msg.data === 'object') return msg as ClientMessage;
  } catch {
    /* malformed: not a message */
  }
  return null;
}
