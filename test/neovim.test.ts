/**
 * A real editor as the client: Debian's Neovim (0.7) headless starts `mgd serve --stdio` with
 * `vim.lsp.start_client`, attaches it to a fixture file and asks `textDocument/completion` after `c.` (Neovim 0.7 has
 * no inline completion, so this is the fallback path). Skipped, saying why, when `nvim` is not installed
 * (`.ci/run` installs it where apt is available).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const root = path.resolve(import.meta.dirname, '..');
const workspace = path.join(root, 'fixtures/repos/shapes');
const file = path.join(workspace, 'src/main.ts');

const nvim = spawnSync('nvim', ['--version'], { encoding: 'utf8' });
const nvimVersion = nvim.status === 0 ? nvim.stdout.split('\n')[0] : null;
if (!nvimVersion) console.warn('neovim.test.ts: skipped, `nvim` is not installed (apt-get install neovim; .ci/run does it)');

// Writes {"version": ..., "response": ...} or {"error": ...} to MGD_NVIM_OUT, then quits.
const SCRIPT = String.raw`
local out = os.getenv('MGD_NVIM_OUT')
local function finish(value, code)
  local f = io.open(out, 'w')
  f:write(vim.fn.json_encode(value))
  f:close()
  vim.cmd(code == 0 and 'qall!' or 'cquit! ' .. code)
end
local ok, err = pcall(function()
  vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('MGD_NVIM_FILE')))
  local bufnr = vim.api.nvim_get_current_buf()
  local id = vim.lsp.start_client({
    name = 'mgd',
    cmd = vim.fn.json_decode(os.getenv('MGD_NVIM_CMD')),
    root_dir = os.getenv('MGD_NVIM_ROOT'),
  })
  assert(id, 'start_client returned nil')
  assert(vim.lsp.buf_attach_client(bufnr, id), 'buf_attach_client failed')
  local ready = vim.wait(60000, function()
    local c = vim.lsp.get_client_by_id(id)
    return c ~= nil and c.initialized == true
  end, 50)
  assert(ready, 'the server did not initialize within 60 s')
  local client = vim.lsp.get_client_by_id(id)
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = tonumber(os.getenv('MGD_NVIM_LINE')), character = tonumber(os.getenv('MGD_NVIM_CHARACTER')) },
  }
  local response, request_err = client.request_sync('textDocument/completion', params, 120000, bufnr)
  assert(response, 'textDocument/completion failed: ' .. tostring(request_err))
  local version = vim.version()
  vim.lsp.stop_client(id)
  vim.wait(5000, function() return vim.lsp.get_client_by_id(id) == nil end, 50)
  finish({ version = version.major .. '.' .. version.minor, response = response }, 0)
end)
if not ok then finish({ error = tostring(err) }, 1) end
`;

interface CompletionList {
  isIncomplete: boolean;
  items: Array<{ label: string; textEdit?: { newText: string; range: { start: { line: number; character: number } } } }>;
}

describe.skipIf(!nvimVersion)(`Neovim (${nvimVersion ?? 'not installed'}) as the LSP client`, () => {
  it('starts mgd serve --stdio with vim.lsp.start_client and gets a completion after `c.`', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-nvim-'));
    try {
      const script = path.join(dir, 'complete.lua');
      const out = path.join(dir, 'out.json');
      fs.writeFileSync(script, SCRIPT);
      // line 10 is `    sum += c.`: after the dot the monitors allow only Circle's members
      expect(fs.readFileSync(file, 'utf8').split('\n')[10]).toBe('    sum += c.');
      const cmd = [process.execPath, path.join(root, 'bin/mgd.js'), 'serve', '--stdio', '--model', ensureFixtureModel('tiny'), '--threads', '2'];
      const r = spawnSync('nvim', ['--headless', '--clean', '-n', '-c', `luafile ${script}`], {
        encoding: 'utf8',
        timeout: 170_000,
        env: {
          ...process.env,
          MGD_NVIM_OUT: out,
          MGD_NVIM_FILE: file,
          MGD_NVIM_ROOT: workspace,
          MGD_NVIM_CMD: JSON.stringify(cmd),
          MGD_NVIM_LINE: '10',
          MGD_NVIM_CHARACTER: '13',
          // keep Neovim's state and LSP log out of the home directory
          XDG_STATE_HOME: dir,
          XDG_CACHE_HOME: dir,
          XDG_DATA_HOME: dir,
        },
      });
      const result = fs.existsSync(out) ? (JSON.parse(fs.readFileSync(out, 'utf8')) as { error?: string; version?: string; response?: { result?: CompletionList; err?: unknown } }) : null;
      expect(result, `nvim wrote nothing (exit ${r.status}, signal ${r.signal}): ${r.stderr}`).not.toBeNull();
      expect(result!.error).toBeUndefined();
      expect(r.status).toBe(0);
      expect(result!.response!.err ?? null).toBeNull();
      const list = result!.response!.result!;
      expect(list.items.length).toBe(1);
      const item = list.items[0]!;
      expect(item.textEdit!.range.start).toEqual({ line: 10, character: 13 });
      const member = /^[A-Za-z_$][\w$]*/.exec(item.textEdit!.newText)?.[0] ?? '';
      // a random-weight model may stop inside the name: then it is the start of a member
      expect(['area', 'center', 'radius', 'translate'].some((m) => member.length > 0 && m.startsWith(member)), `completion "${item.textEdit!.newText}"`).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
