/**
 * One segment request to a serving engine, in each engine's own shape. The prompt is always token ids (our
 * tokenizer, the same vocabulary as the served model), so what the engine's prefix cache keys on is exactly what we
 * send, and consecutive segments of one completion share the longest token prefix.
 *
 *   llama.cpp server  POST /completion      {prompt: ids, n_predict, stop, grammar, cache_prompt, return_tokens}
 *   vLLM (>= 0.12)    POST /v1/completions  {model, prompt: ids, max_tokens, stop, structured_outputs: {regex}}
 *   SGLang            POST /generate        {input_ids, sampling_params: {max_new_tokens, stop, regex}}
 *
 * vLLM ignores fields it does not know, and v0.12 removed the older `guided_regex`: sending the wrong one runs the
 * segment unconstrained without a word. So the vLLM adapter reads GET /version first and picks the field by version,
 * and refuses (a clear error) when it cannot tell.
 *
 * Cancellation: the caller's AbortSignal aborts the fetch, which closes the connection; all three engines stop the
 * request when its connection closes. Timeouts, HTTP errors and unreachable engines become RemoteEngineError with
 * one line naming the engine and URL.
 */
import { BadInputError } from '../../errors.js';
import type { SegmentConstraint } from './constraint.js';

export const REMOTE_ENGINES = ['vllm', 'sglang', 'llamacpp'] as const;
export type RemoteEngineName = (typeof REMOTE_ENGINES)[number];

export interface SegmentRequest {
  prompt: readonly number[];
  maxTokens: number;
  stop: readonly string[];
  constraint: SegmentConstraint | null;
  temperature: number;
  seed?: number;
  /** Stream: called with each piece of text as the engine sends it (the request then uses the engine's SSE mode). */
  onText?: (delta: string) => void;
}

export interface SegmentResult {
  text: string;
  /** Tokens the engine generated for this segment. */
  tokens: number;
  /** 'stop': a stop string (which one in `stoppedBy`, not part of `text`); 'eos': end of generation or the
   *  constraint complete; 'length': the token budget. */
  finish: 'stop' | 'eos' | 'length';
  stoppedBy: string | null;
}

/** The engine failed, timed out or is unreachable: the user's setup to fix, so bad input (exit 2; servers answer it). */
export class RemoteEngineError extends BadInputError {}

export interface RemoteEngineOptions {
  engine: RemoteEngineName;
  url: string;
  token?: string;
  /** vLLM's served model name (default: the first of GET /v1/models). */
  model?: string;
  /** Per request, default 30 s. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface RemoteEngine {
  readonly name: RemoteEngineName;
  readonly url: string;
  complete(req: SegmentRequest, signal?: AbortSignal): Promise<SegmentResult>;
}

export function createRemoteEngine(o: RemoteEngineOptions): RemoteEngine {
  const http = new Http(o);
  switch (o.engine) {
    case 'llamacpp':
      return new LlamaCppServer(http);
    case 'vllm':
      return new Vllm(http, o.model);
    case 'sglang':
      return new Sglang(http);
  }
}

type Json = Record<string, unknown>;

class Http {
  readonly url: string;
  private readonly fetch: typeof fetch;

  constructor(private readonly o: RemoteEngineOptions) {
    this.url = o.url.replace(/\/+$/, '');
    this.fetch = o.fetch ?? fetch;
  }

  async json(method: 'GET' | 'POST', route: string, body: unknown, signal?: AbortSignal): Promise<Json> {
    const { res, where, fail } = await this.send(method, route, body, signal);
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      return fail(e);
    }
    try {
      return JSON.parse(text) as Json;
    } catch {
      throw new RemoteEngineError(`${where}: answer is not JSON: ${text.slice(0, 100)}`);
    }
  }

  /** POST with a streamed answer: the JSON payload of each Server-Sent Event's `data:` line, until `[DONE]` or the end. */
  async *events(route: string, body: unknown, signal?: AbortSignal): AsyncGenerator<Json> {
    const { res, where, fail } = await this.send('POST', route, body, signal);
    if (!res.body) throw new RemoteEngineError(`${where}: streamed answer has no body`);
    const decoder = new TextDecoder();
    let pending = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl).replace(/\r$/, '');
          pending = pending.slice(nl + 1);
          if (!line.startsWith('data:')) continue; // comments, event names, blank separators
          const data = line.slice(5).trim();
          if (data === '[DONE]') return;
          try {
            yield JSON.parse(data) as Json;
          } catch {
            throw new RemoteEngineError(`${where}: streamed event is not JSON: ${data.slice(0, 100)}`);
          }
        }
      }
    } catch (e) {
      if (e instanceof RemoteEngineError) throw e;
      fail(e);
    }
  }

  private async send(method: 'GET' | 'POST', route: string, body: unknown, signal?: AbortSignal) {
    const timeoutMs = this.o.timeoutMs ?? 30_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const where = `${this.o.engine} at ${this.url}${route}`;
    /** Transport failures in one line; the caller's own cancellation passes through untouched. */
    const fail = (e: unknown): never => {
      if (signal?.aborted) throw e;
      if (timeout.aborted) throw new RemoteEngineError(`${where}: no answer within ${timeoutMs} ms`);
      const cause = (e as { cause?: { code?: string } }).cause?.code;
      throw new RemoteEngineError(`${where}: unreachable (${cause ?? (e instanceof Error ? e.message : String(e))})`);
    };
    let res: Response;
    try {
      res = await this.fetch(this.url + route, {
        method,
        headers: { 'content-type': 'application/json', ...(this.o.token ? { authorization: `Bearer ${this.o.token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (e) {
      return fail(e);
    }
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      throw new RemoteEngineError(`${where}: HTTP ${res.status}: ${text.replace(/\s+/g, ' ').slice(0, 200)}`);
    }
    return { res, where, fail };
  }
}

class LlamaCppServer implements RemoteEngine {
  readonly name = 'llamacpp';
  constructor(private readonly http: Http) {}
  get url() {
    return this.http.url;
  }

  static body(req: SegmentRequest): Json {
    return {
      prompt: [...req.prompt],
      n_predict: req.maxTokens,
      stop: [...req.stop],
      temperature: req.temperature,
      ...(req.seed === undefined ? {} : { seed: req.seed }),
      ...(req.constraint ? { grammar: req.constraint.gbnf } : {}),
      cache_prompt: true,
      return_tokens: true,
      stream: req.onText !== undefined,
    };
  }

  async complete(req: SegmentRequest, signal?: AbortSignal): Promise<SegmentResult> {
    let r: Json;
    if (req.onText) {
      // events carry text pieces; the last one (stop: true) carries how it ended
      let content = '';
      r = {};
      for await (const ev of this.http.events('/completion', LlamaCppServer.body(req), signal)) {
        const piece = typeof ev.content === 'string' ? ev.content : '';
        if (piece) req.onText(piece);
        content += piece;
        if (ev.stop === true) r = ev;
      }
      r = { ...r, content };
    } else r = await this.http.json('POST', '/completion', LlamaCppServer.body(req), signal);
    const stopType = r.stop_type as string | undefined;
    const word = typeof r.stopping_word === 'string' && r.stopping_word !== '' ? r.stopping_word : null;
    return {
      text: String(r.content ?? ''),
      tokens: typeof r.tokens_predicted === 'number' ? r.tokens_predicted : Array.isArray(r.tokens) ? r.tokens.length : 0,
      finish: stopType === 'word' ? 'stop' : stopType === 'limit' ? 'length' : 'eos',
      stoppedBy: stopType === 'word' ? word : null,
    };
  }
}

/** vLLM versions from which `structured_outputs` is the constraint field (and `guided_*` is gone). */
const VLLM_STRUCTURED_OUTPUTS_FROM = [0, 12];

class Vllm implements RemoteEngine {
  readonly name = 'vllm';
  private field: Promise<'structured_outputs' | 'guided_regex'> | null = null;
  private model: Promise<string> | null = null;
  constructor(
    private readonly http: Http,
    model?: string,
  ) {
    if (model) this.model = Promise.resolve(model);
  }
  get url() {
    return this.http.url;
  }

  /** Which field carries the regex on this server: by GET /version. */
  private constraintField(signal?: AbortSignal) {
    this.field ??= this.http.json('GET', '/version', undefined, signal).then((v) => {
      const version = String(v.version ?? '');
      const m = /^(\d+)\.(\d+)/.exec(version);
      if (!m) throw new RemoteEngineError(`vllm at ${this.url}: cannot read the server version (${JSON.stringify(v.version ?? null)}), so cannot tell how to send a constraint; refusing to run unconstrained`);
      const [major, minor] = [Number(m[1]), Number(m[2])];
      const modern = major > VLLM_STRUCTURED_OUTPUTS_FROM[0]! || (major === VLLM_STRUCTURED_OUTPUTS_FROM[0] && minor >= VLLM_STRUCTURED_OUTPUTS_FROM[1]!);
      return modern ? 'structured_outputs' : 'guided_regex';
    });
    this.field.catch(() => (this.field = null)); // a failed probe is retried on the next request
    return this.field;
  }

  private servedModel(signal?: AbortSignal) {
    this.model ??= this.http.json('GET', '/v1/models', undefined, signal).then((r) => {
      const id = (r.data as Array<{ id?: string }> | undefined)?.[0]?.id;
      if (!id) throw new RemoteEngineError(`vllm at ${this.url}: /v1/models lists no model`);
      return id;
    });
    return this.model;
  }

  static body(req: SegmentRequest, model: string, field: 'structured_outputs' | 'guided_regex'): Json {
    const constraint = req.constraint ? (field === 'structured_outputs' ? { structured_outputs: { regex: req.constraint.regex } } : { guided_regex: req.constraint.regex }) : {};
    return {
      model,
      prompt: [...req.prompt],
      max_tokens: req.maxTokens,
      stop: [...req.stop],
      temperature: req.temperature,
      ...(req.seed === undefined ? {} : { seed: req.seed }),
      ...constraint,
      skip_special_tokens: true,
      stream: req.onText !== undefined,
      ...(req.onText ? { stream_options: { include_usage: true } } : {}),
    };
  }

  async complete(req: SegmentRequest, signal?: AbortSignal): Promise<SegmentResult> {
    const field = await this.constraintField(signal); // asked before the first request, constrained or not
    const body = Vllm.body(req, await this.servedModel(signal), field);
    let r: Json;
    if (req.onText) {
      // chunks carry text pieces; the last choice chunk how it ended, a final chunk (include_usage) the token count
      const last: Json = { finish_reason: null, stop_reason: null };
      let text = '';
      let usage: unknown;
      for await (const ev of this.http.events('/v1/completions', body, signal)) {
        const c = (ev.choices as Json[] | undefined)?.[0];
        if (c) {
          const piece = typeof c.text === 'string' ? c.text : '';
          if (piece) req.onText(piece);
          text += piece;
          if (c.finish_reason != null) [last.finish_reason, last.stop_reason] = [c.finish_reason, c.stop_reason ?? null];
        }
        if (ev.usage) usage = ev.usage;
      }
      r = { choices: [{ ...last, text }], usage };
    } else r = await this.http.json('POST', '/v1/completions', body, signal);
    const choice = (r.choices as Json[] | undefined)?.[0];
    if (!choice) throw new RemoteEngineError(`vllm at ${this.url}: answer has no choices`);
    const stopReason = choice.stop_reason;
    const finish = choice.finish_reason === 'length' ? 'length' : typeof stopReason === 'string' ? 'stop' : 'eos';
    return {
      text: String(choice.text ?? ''),
      tokens: Number((r.usage as Json | undefined)?.completion_tokens ?? 0),
      finish,
      stoppedBy: finish === 'stop' ? (stopReason as string) : null,
    };
  }
}

class Sglang implements RemoteEngine {
  readonly name = 'sglang';
  constructor(private readonly http: Http) {}
  get url() {
    return this.http.url;
  }

  static body(req: SegmentRequest): Json {
    return {
      input_ids: [...req.prompt],
      sampling_params: {
        max_new_tokens: req.maxTokens,
        stop: [...req.stop],
        temperature: req.temperature,
        ...(req.seed === undefined ? {} : { sampling_seed: req.seed }),
        ...(req.constraint ? { regex: req.constraint.regex } : {}),
      },
      stream: req.onText !== undefined,
    };
  }

  async complete(req: SegmentRequest, signal?: AbortSignal): Promise<SegmentResult> {
    let r: Json;
    if (req.onText) {
      // each event carries the text so far (or, with --incremental-streaming-output, the new piece) and meta_info
      let text = '';
      r = {};
      for await (const ev of this.http.events('/generate', Sglang.body(req), signal)) {
        const t = typeof ev.text === 'string' ? ev.text : '';
        const piece = t.startsWith(text) ? t.slice(text.length) : t;
        if (piece) req.onText(piece);
        text += piece;
        r = ev;
      }
      r = { ...r, text };
    } else r = await this.http.json('POST', '/generate', Sglang.body(req), signal);
    const meta = (r.meta_info as Json | undefined) ?? {};
    const fr = (meta.finish_reason as Json | null | undefined) ?? null;
    const matched = fr?.matched;
    const finish = fr?.type === 'length' ? 'length' : typeof matched === 'string' ? 'stop' : 'eos';
    return { text: String(r.text ?? ''), tokens: Number(meta.completion_tokens ?? 0), finish, stoppedBy: finish === 'stop' ? (matched as string) : null };
  }
}

/** Request bodies as each engine gets them (recorded-exchange tests compare against these). */
export const requestBody = {
  llamacpp: (req: SegmentRequest) => LlamaCppServer.body(req),
  vllm: (req: SegmentRequest, model: string, field: 'structured_outputs' | 'guided_regex' = 'structured_outputs') => Vllm.body(req, model, field),
  sglang: (req: SegmentRequest) => Sglang.body(req),
};
