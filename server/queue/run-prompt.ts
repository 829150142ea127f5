/**
 * Running one prompt, the one way every path does it (embedded queue, each device of `serve --devices`, farm worker,
 * CLI `run`): validate it (once; a caller that validated already passes the result), execute it, and produce its
 * history entry. Events go to the caller's hooks; a prompt that fails validation emits execution_error and
 * `executing null`, like a failed node, and runs nothing. Throws only for failures outside any node (the caller's
 * machinery decides what that means).
 * Example:
 *   const r = await runPrompt(executor, item, { emit, preview, signal, log });
 *   store.finish(item, r.entry);
 */
import { event, type ExecutionErrorData } from '../../protocol/events.js';
import type { Executor, RunHooks, RunResult } from '../executor/execute.js';
import { validatePrompt, type ValidationResult, type ValidPrompt } from '../executor/validate.js';
import type { Prompt } from '../executor/prompt.js';
import { historyEntry, type HistoryEntry, type QueueItem } from './store.js';

export type InvalidPrompt = Exclude<ValidationResult, ValidPrompt>;

export interface RunPromptOptions {
  /** the prompt's validation, when the caller has it (POST /prompt, `run` before loading any model) */
  valid?: ValidPrompt;
  /** the execution_error a prompt that fails validation reports (default: the validation error's message) */
  describeInvalid?(v: InvalidPrompt, item: QueueItem): ExecutionErrorData;
}

export interface PromptOutcome {
  status: RunResult['status'];
  /** the executor's result; null when validation failed (nothing ran) */
  result: RunResult | null;
  entry: HistoryEntry;
}

/** The execution_error of a prompt that failed validation when it came to run. */
export function invalidPromptError(v: InvalidPrompt, item: QueueItem): ExecutionErrorData {
  const nodeId = Object.keys(v.body.node_errors)[0];
  return {
    prompt_id: item.promptId,
    node_id: nodeId ?? '',
    // clients mark the node by id and show its class: a prompt that fails validation when it comes to run (after a
    // restart, on a farm worker) names both, as a failing node does
    node_type: nodeId ? v.body.node_errors[nodeId].class_type : '',
    executed: [],
    exception_message: `${v.body.error.message}: ${v.body.error.details}`,
    exception_type: v.body.error.type,
    traceback: [],
    current_inputs: {},
    current_outputs: {},
    timestamp: Date.now(),
  };
}

export async function runPrompt<S>(
  executor: Executor<S>,
  item: QueueItem,
  hooks: RunHooks,
  o: RunPromptOptions = {},
): Promise<PromptOutcome> {
  const v =
    o.valid ??
    validatePrompt(item.prompt, executor.registry, executor.services, item.outputs.length ? item.outputs : undefined);
  if (!v.ok) {
    const data = (o.describeInvalid ?? invalidPromptError)(v, item);
    hooks.emit(event('execution_error', data));
    hooks.emit(event('executing', { node: null, prompt_id: item.promptId }));
    return { status: 'error', result: null, entry: historyEntry(item, {}, 'error', [['execution_error', data]]) };
  }
  const result = await executor.run(
    {
      promptId: item.promptId,
      prompt: item.prompt as Prompt,
      extraData: item.extraData,
      outputs: v.outputs,
      constants: v.constants,
    },
    hooks,
  );
  const entry = historyEntry(item, result.outputs, result.status === 'success' ? 'success' : 'error', result.messages);
  return { status: result.status, result, entry };
}
