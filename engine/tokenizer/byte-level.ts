/**
 * How token strings in tokenizer.json map to the bytes they stand for.
 *
 * Byte-level BPE (GPT-2, Qwen2, Llama 3, StarCoder) writes every byte as a printable character: bytes that are
 * printable Latin-1 stand for themselves, the rest (control bytes, space, ...) are shifted to U+0100 and up, so
 * " foo" is spelled "Ġfoo". SentencePiece BPE (Llama 2, CodeLlama) writes a space as "▁" and bytes it has no piece for
 * as "<0x0A>" tokens. Token bytes are what the monitors' vocabulary trie is built from, so both must be exact.
 */
const byteToChar: string[] = [];
const charToByte = new Map<string, number>();
{
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const ch = String.fromCharCode(printable ? b : 256 + shifted++);
    byteToChar[b] = ch;
    charToByte.set(ch, b);
  }
}

/** The byte-level spelling of a byte. */
export function byteLevelChar(b: number): string {
  return byteToChar[b]!;
}

/** The byte-level spelling of a string's UTF-8 bytes. */
export function toByteLevel(text: string): string {
  let out = '';
  for (const b of new TextEncoder().encode(text)) out += byteToChar[b];
  return out;
}

/** Bytes of a byte-level token string, or null if a character is not in the byte alphabet. */
export function byteLevelBytes(token: string): Uint8Array | null {
  const out = new Uint8Array(token.length);
  let i = 0;
  for (const ch of token) {
    const b = charToByte.get(ch);
    if (b === undefined) return null;
    out[i++] = b;
  }
  return out.subarray(0, i);
}

const BYTE_FALLBACK = /^<0x([0-9A-Fa-f]{2})>$/;

/** Bytes of a SentencePiece token: "▁" is a space, "<0xNN>" is one raw byte, anything else its UTF-8. */
export function sentencePieceBytes(token: string): Uint8Array {
  const m = BYTE_FALLBACK.exec(token);
  if (m) return Uint8Array.of(parseInt(m[1]!, 16));
  return new TextEncoder().encode(token.replaceAll('\u2581', ' '));
}
