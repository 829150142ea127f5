/**
 * ComfyUI's validation error types and its 400 JSON shape for POST /prompt. Built here, and only here; the editor
 * and the typed client read the same types.
 */

export const VALIDATION_ERROR_TYPES = [
  'invalid_prompt',
  'prompt_no_outputs',
  'required_input_missing',
  'bad_linked_input',
  'return_type_mismatch',
  'invalid_input_type',
  'value_smaller_than_min',
  'value_bigger_than_max',
  'value_not_in_list',
  'custom_validation_failed',
  'exception_during_validation',
  'prompt_outputs_failed_validation',
] as const;
export type ValidationErrorType =
  (typeof VALIDATION_ERROR_TYPES)[number] | 'no_prompt' | 'unknown_node_type' | 'dependency_cycle';

export interface ErrorItem {
  type: string;
  message: string;
  details: string;
  /** input_name names the offending input of the node, when there is one */
  extra_info: { input_name?: string; [k: string]: unknown };
}

export interface NodeErrors {
  errors: ErrorItem[];
  dependent_outputs: string[];
  class_type: string;
}

/** The body of a 400 answer to POST /prompt. */
export interface PromptErrorBody {
  error: ErrorItem;
  node_errors: Record<string, NodeErrors>;
}

export function errorItem(
  type: ValidationErrorType | string,
  message: string,
  details = '',
  extra: ErrorItem['extra_info'] = {},
): ErrorItem {
  return { type, message, details, extra_info: extra };
}

export function promptError(error: ErrorItem, nodeErrors: Record<string, NodeErrors> = {}): PromptErrorBody {
  return { error, node_errors: nodeErrors };
}

/** A generic 4xx body for routes other than /prompt (same outer shape, so clients parse one thing). */
export function httpError(
  type: string,
  message: string,
  details = '',
): { error: ErrorItem; node_errors: Record<string, never> } {
  return { error: errorItem(type, message, details), node_errors: {} };
}
