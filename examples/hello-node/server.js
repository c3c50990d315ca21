// hello-node: a Flint function using only Node's standard library.
// It listens on $PORT and answers with a greeting that names its revision's
// GREETING, which makes traffic splitting between revisions visible.
'use strict';
const http = require('node:http');

const port = Number(process.env.PORT || 8080);
const greeting = process.env.GREETING || 'Hello';

const server = http.createServer((req, res) => {
  if (req.method === 'POST') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ greeting, path: req.url, echo: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body + '\n');
    });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`${greeting} from Flint! (node, path ${req.url})\n`);
});

server.listen(port, process.env.FLINT_DEV ? '127.0.0.1' : '0.0.0.0');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
