/**
 * The hook between the model and the sampler: the monitors implement it (engine/monitors). Each step the decode loop
 * asks every processor what it allows, or hands it the logits, in order. After sampling, each processor is told the
 * chosen token so it can advance its state.
 *
 * Two ways to constrain: `allowed()` returns a token mask (a bitset), which the backend can apply where the logits
 * are (on the GPU the row never leaves the device); `process()` edits the whole row on the host (a test processor
 * that boosts tokens, anything not expressible as a mask). A processor implements one of them; any `process()` among
 * a request's processors makes every step read the whole row back.
 */
export interface DecodeState {
  /** 0-based index of the token about to be chosen. */
  step: number;
  /** Token ids generated so far. */
  tokens: readonly number[];
  /** The generated text so far (complete UTF-8 characters only). */
  text: string;
  /** Set when a processor rejected the sampled token: constrain again, with everything you know. */
  strict?: boolean;
}

export interface LogitsProcessor {
  /**
   * Before allowed()/process(), each step: fetch what this step needs that takes time (a language server's answer),
   * so that they stay synchronous. The loop awaits it only when it returns a promise.
   */
  prepare?(state: DecodeState): void | Promise<unknown>;
  /**
   * The tokens allowed this step: bit (id & 31) of word (id >> 5) set = allowed, a missing word = none of its ids
   * (TokenMasks builds these); null = no constraint this step. The array is only read, and may be shared.
   */
  allowed?(state: DecodeState): Uint32Array | null;
  /** Adjusts the logits in place before sampling (forbid = -Infinity). Returns true if it masked anything. */
  process?(logits: Float32Array, state: DecodeState): boolean;
  /**
   * Sample-then-verify, for constraints too costly to compute every step: true if the sampled token must not be
   * emitted. The loop then asks again with state.strict set and samples once more.
   */
  reject?(token: number, bytes: Uint8Array, state: DecodeState): boolean | Promise<boolean>;
  /** The token chosen this step and the bytes it adds to the output. */
  accept?(token: number, bytes: Uint8Array, state: DecodeState): void;
  /**
   * Fast-forward: text that must come next whatever the model would say (the rest of the only legal name, the `)`
   * of a call that takes no argument). The loop appends its tokens without a model step (llguidance's and XGrammar's
   * "forced tokens"). Called after prepare(); null or '' when the model has a choice.
   */
  forced?(state: DecodeState): string | null;
  /**
   * The end of a suggestion (token limit, stop rule, cancellation): how `text` (the generated text) must end so that
   * it does not stop inside this processor's construct, e.g. halfway through a monitored name: `append` the rest of
   * the only legal name, or `cut` back to that many characters (before the name). null: it may end as it is.
   */
  settle?(text: string): { append: string } | { cut: number } | null;
}
