/**
 * What the engine needs of a tokenizer. Implemented over Hugging Face `tokenizers` (engine/tokenizer/tokenizer.ts).
 */
export interface FimTokens {
  /** The spelling family, for logs: 'qwen' (<|fim_prefix|>) | 'starcoder' (<fim_prefix>) | 'codellama' (<PRE>). */
  style: 'qwen' | 'starcoder' | 'codellama';
  prefix: number;
  suffix: number;
  middle: number;
  /** <|file_sep|> / <file_sep> when the vocabulary has it (repository-level context). */
  fileSep: number | null;
  /** <|repo_name|> / <reponame> when present. */
  repoName: number | null;
  /** <|fim_pad|> / <fim_pad> when present. */
  pad: number | null;
}

export interface TextTokenizer {
  /** Number of ids (base vocabulary + added tokens). */
  readonly vocabSize: number;
  /**
   * Encodes ordinary text. Special-token spellings inside `text` (e.g. a file that contains "<|endoftext|>") are
   * encoded as plain text, never as the special token: user content cannot inject control tokens.
   * Async because the Hugging Face binding encodes off the main thread.
   */
  encode(text: string): Promise<number[]>;
  /** Decodes ids to text (special tokens omitted when skipSpecial). */
  decode(ids: readonly number[], skipSpecial?: boolean): string;
  /** The exact bytes a token contributes to the output (empty for special tokens). The monitors' trie is built from these. */
  tokenBytes(id: number): Uint8Array;
  /** The id of a token spelled exactly `content` (special or not), or null. */
  tokenId(content: string): number | null;
  isSpecial(id: number): boolean;
  /** End-of-sequence ids: eos from the configs plus <|endoftext|>-like specials. */
  readonly eosIds: readonly number[];
  readonly bosId: number | null;
  /** Whether prompts start with bosId (tokenizer_config.json's add_bos_token, as Llama 2/CodeLlama want). */
  readonly addBos: boolean;
  /** Fill-in-the-middle tokens, or null when the vocabulary has none (plain prefix prompts then). */
  readonly fim: FimTokens | null;
}
