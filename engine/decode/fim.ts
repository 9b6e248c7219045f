/**
 * Prompt assembly: the text around the cursor (and repository context) as token ids, in the format the model was
 * trained on.
 *
 *  qwen (Qwen2.5-Coder):  [<|repo_name|>repo\n] [<|file_sep|>path\ntext]... [<|file_sep|>file\n]
 *                         <|fim_prefix|>prefix<|fim_suffix|>suffix<|fim_middle|>
 *      order 'spm':         ... <|fim_suffix|>suffix<|fim_prefix|>prefix<|fim_middle|>
 *      order 'spm-joined':  ... <|fim_suffix|>suffix<|fim_prefix|>prefix       (the middle continues the prefix)
 *  starcoder:             the same with <reponame>, <file_sep>, <fim_prefix>, <fim_suffix>, <fim_middle>
 *  codellama:             <PRE> prefix <SUF>suffix <MID>   (the ▁-prefixed control tokens carry the spaces)
 *  no FIM tokens:         context as commented blocks, then the prefix; the suffix is dropped
 *
 * Budgets keep what matters near the cursor: the END of the prefix and the START of the suffix, cut at line
 * boundaries; context blocks in the order given, each that still fits its budget. User text goes through encode(), which
 * never yields control tokens.
 */
import type { TextTokenizer } from '../tokenizer/types.js';

/**
 * FIM order. 'psm': prefix-suffix-middle, Qwen2.5-Coder's (the default). 'spm': suffix-prefix-middle,
 * `<|fim_suffix|>suffix<|fim_prefix|>prefix<|fim_middle|>` (`"mgd_prompt": "fim-spm"`). 'spm-joined': the suffix
 * first and the middle written straight after the prefix, no `<|fim_middle|>` between them (Bavarian et al. 2022's
 * SPM; `"mgd_prompt": "fim-spm-joined"`): generation is plain left-to-right continuation that has seen the suffix, so
 * a small model keeps its left-to-right skill, token healing works as in prefix mode, and while the user types at
 * one place the prompt only grows at its end (the KV cache reuses all of it).
 */
export type FimOrder = 'psm' | 'spm' | 'spm-joined';

export interface PromptInput {
  prefix: string;
  suffix: string;
  filePath?: string;
  repoName?: string;
  context?: Array<{ path: string; text: string }>;
  budget?: { prefixTokens: number; suffixTokens: number; contextTokens: number };
  /**
   * Token healing: leave the prefix's last token out of the prompt, to be regenerated. Byte-level BPE merges a
   * trailing `.` (or space) with what follows (`obj` `.length`), so a prompt ending in a bare `.` token is a state
   * the model never saw in training; healing lets it choose `.length` itself. See Prompt.healed.
   */
  heal?: boolean | ((tokenText: string) => boolean);
  /** Use the FIM format when the vocabulary has one (default). False: left-to-right prefix, for models weak at FIM. */
  fim?: boolean;
  /** FIM order (a model declares it in generation_config.json: see FimOrder). */
  fimOrder?: FimOrder;
}

export interface Prompt {
  tokens: number[];
  mode: 'fim' | 'prefix';
  prefixTokens: number;
  suffixTokens: number;
  contextTokens: number;
  /** The text of the prefix's last token, left out of the prompt when healing (the completion must start with it). */
  healed: string;
  /** Leading tokens every cursor position in this file shares: repository context and the file header. */
  headerTokens: number;
  /** Where the prefix's tokens end: what stays the same while the user types at this cursor. */
  prefixEnd: number;
}

export async function buildPrompt(tok: TextTokenizer, input: PromptInput): Promise<Prompt> {
  const budget = input.budget ?? { prefixTokens: 2048, suffixTokens: 512, contextTokens: 1024 };
  const fim = input.fim === false ? null : tok.fim;
  // Context first: what it leaves of its budget goes to the prefix.
  const blocks: number[][] = [];
  let contextTokens = 0;
  const withFileSep = !!fim && fim.style !== 'codellama' && fim.fileSep !== null;
  for (const block of input.context ?? []) {
    const t = withFileSep
      ? [fim!.fileSep!, ...(await tok.encode(`${block.path}\n${block.text}\n`))]
      : await tok.encode(`// ${block.path}\n${block.text.replace(/^/gm, '// ')}\n\n`);
    if (contextTokens + t.length > budget.contextTokens) continue; // too big for what is left: a smaller block may fit
    blocks.push(t);
    contextTokens += t.length;
  }
  const prefix = await keepEnd(tok, input.prefix, budget.prefixTokens + (budget.contextTokens - contextTokens));
  let healed = input.heal ? healable(tok, prefix) : '';
  if (healed && typeof input.heal === 'function' && !input.heal(healed)) healed = '';
  if (healed) prefix.pop();
  const out: number[] = tok.addBos && tok.bosId !== null ? [tok.bosId] : [];

  if (!fim) {
    for (const t of blocks) out.push(...t);
    const headerTokens = out.length;
    out.push(...prefix);
    return { tokens: out, mode: 'prefix', prefixTokens: prefix.length, suffixTokens: 0, contextTokens, healed, headerTokens, prefixEnd: out.length };
  }

  const suffix = await keepStart(tok, input.suffix, budget.suffixTokens);
  if (withFileSep && (blocks.length || input.filePath)) {
    if (input.repoName && fim.repoName !== null) out.push(fim.repoName, ...(await tok.encode(`${input.repoName}\n`)));
    for (const t of blocks) out.push(...t);
    if (input.filePath) out.push(fim.fileSep!, ...(await tok.encode(`${input.filePath}\n`)));
  } else {
    // CodeLlama's format has no file separator: context goes in as comments at the start of the prefix
    for (const t of blocks) out.push(...t);
  }
  const headerTokens = out.length;
  let prefixEnd: number;
  // (CodeLlama's format has a space after <PRE> and before <MID>: its ▁-prefixed control tokens carry it.)
  if (input.fimOrder === 'spm' || input.fimOrder === 'spm-joined') {
    out.push(fim.suffix, ...suffix, fim.prefix, ...prefix);
    prefixEnd = out.length;
    if (input.fimOrder === 'spm') out.push(fim.middle);
  } else {
    out.push(fim.prefix, ...prefix);
    prefixEnd = out.length;
    out.push(fim.suffix, ...suffix, fim.middle);
  }
  return { tokens: out, mode: 'fim', prefixTokens: prefix.length, suffixTokens: suffix.length, contextTokens, healed, headerTokens, prefixEnd };
}

/** The last token's text if it can be healed: short, whole UTF-8, on the cursor's line, and not the only token. */
function healable(tok: TextTokenizer, tokens: number[]): string {
  if (tokens.length < 2) return '';
  const bytes = tok.tokenBytes(tokens[tokens.length - 1]!);
  if (bytes.length === 0 || bytes.length > 16 || bytes.includes(0x0a)) return '';
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return '';
  }
}

/**
 * Tokens of the last part of `text` that fits `budget`, starting at a line boundary. The cut moves in steps of
 * CUT_LINES lines, so while the user types the prompt's start stays put and the KV cache keeps serving it.
 */
async function keepEnd(tok: TextTokenizer, text: string, budget: number): Promise<number[]> {
  let t = await tok.encode(text);
  if (t.length <= budget) return t;
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1 && i < text.length - 1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  const cuts = starts.filter((_, line) => line % CUT_LINES === 0);
  // the first cut that fits, searched from a character estimate (about 3 per token) outwards
  let k = cuts.findIndex((c) => text.length - c <= budget * 3);
  if (k < 0) k = cuts.length - 1;
  t = await tok.encode(text.slice(cuts[k]));
  while (t.length > budget && k + 1 < cuts.length) t = await tok.encode(text.slice(cuts[++k]));
  while (k > 0) {
    const wider = await tok.encode(text.slice(cuts[k - 1]));
    if (wider.length > budget) break;
    t = wider;
    k--;
  }
  // a single block of CUT_LINES lines longer than the budget: fall back to its last tokens
  return t.length <= budget ? t : t.slice(t.length - budget);
}

const CUT_LINES = 16;

/** Tokens of the first part of `text` that fits `budget`, ending at a line end when one is in reach. */
async function keepStart(tok: TextTokenizer, text: string, budget: number): Promise<number[]> {
  let t = await tok.encode(text);
  if (t.length <= budget) return t;
  let to = Math.min(text.length, budget * 3);
  for (;;) {
    const nl = text.lastIndexOf('\n', to);
    const end = nl > 0 ? nl + 1 : to;
    t = await tok.encode(text.slice(0, end));
    if (t.length <= budget) return t;
    to = Math.floor(end * 0.75);
    if (to <= 0) return t.slice(0, budget);
  }
}
