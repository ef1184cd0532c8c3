// A static server for the browser tests: web/ on 127.0.0.1 at a free port, with the
// content types a page of ES modules and wasm needs (`application/wasm` lets the browser
// compile the module while it downloads). No native build is needed to test the page.
// `inject` is put before the page's module script (firefox.mjs's reporter); `post`
// receives POSTed bodies (the reporter's messages).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png' };

export async function serveWeb({ inject = '', post = null } = {}) {
  const server = http.createServer((req, res) => {
    if (req.method === 'POST' && post) {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        post(body);
        res.end();
      });
      return;
    }
    const url = new URL(req.url, 'http://x');
    const file = path.join(WEB, path.normalize(decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname)));
    if (!file.startsWith(WEB + path.sep)) return res.writeHead(403).end();
    fs.readFile(file, (e, data) => {
      if (e) return res.writeHead(404).end();
      if (inject && file.endsWith('index.html')) data = String(data).replace('<script type="module"', `${inject}<script type="module"`);
      res.writeHead(200, { 'content-type': MIME[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' }).end(data);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}
