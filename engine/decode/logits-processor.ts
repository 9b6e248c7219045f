/**
 * The hook between the model and the sampler: the monitors implement it (engine/monitors). Each step the decode loop
 * hands every processor the logits, in order; a processor forbids tokens by setting their logits to -Infinity.
 * After sampling, each processor is told the chosen token so it can advance its state.
 */
export interface DecodeState {
  /** 0-based index of the token about to be chosen. */
  step: number;
  /** Token ids generated so far. */
  tokens: readonly number[];
  /** The generated text so far (complete UTF-8 characters only). */
  text: string;
  /** Set when a processor rejected the sampled token: process again, constraining everything you know. */
  strict?: boolean;
}

export interface LogitsProcessor {
  /**
   * Before process(), each step: fetch what this step needs that takes time (a language server's answer), so that
   * process() itself stays synchronous. The loop awaits it only when it returns a promise.
   */
  prepare?(state: DecodeState): void | Promise<unknown>;
  /** Adjusts logits in place before sampling. Returns true if it masked anything this step. */
  process(logits: Float32Array, state: DecodeState): boolean;
  /**
   * Sample-then-verify, for constraints too costly to compute every step: true if the sampled token must not be
   * emitted. The loop then calls process() again with state.strict set and samples once more.
   */
  reject?(token: number, bytes: Uint8Array, state: DecodeState): boolean | Promise<boolean>;
  /** The token chosen this step and the bytes it adds to the output. */
  accept?(token: number, bytes: Uint8Array, state: DecodeState): void;
}

/** Forbids ids at and above `limit`: embedding rows that checkpoints pad past the tokenizer have no text. */
export function vocabularyLimit(limit: number): LogitsProcessor {
  return {
    process(logits) {
      if (logits.length <= limit) return false;
      logits.fill(-Infinity, limit);
      return false; // padding rows are not an intervention by analysis; don't count them as masking
    },
  };
}
