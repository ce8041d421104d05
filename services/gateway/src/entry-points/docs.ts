import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpError } from '@crud-master/shared';
import type { Middleware } from 'koa';

// src/entry-points/ in the checkout and dist/entry-points/ in the deployed copy both sit four levels below the root
const SPEC_FILE = fileURLToPath(new URL('../../../../openapi.yaml', import.meta.url));
const SWAGGER_UI_DIR = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

// only the files the page loads, so no other path of the package (or of the disk) can be asked for
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>crud-master API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>window.ui = SwaggerUIBundle({ url: '/openapi.yaml', dom_id: '#swagger-ui', deepLinking: true });</script>
</body>
</html>
`;

/** GET /openapi.yaml (the contract) and GET /docs (Swagger UI), with the UI's assets from swagger-ui-dist: no CDN. */
export function apiDocs(): Middleware {
  return async (ctx, next) => {
    const asset = ctx.path.startsWith('/docs/') ? ctx.path.slice('/docs/'.length) : '';
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      await next();
    } else if (ctx.path === '/openapi.yaml') {
      ctx.state.route = ctx.path;
      // read on each request: it is small, and a redeployed spec needs no restart
      ctx.body = await readFile(SPEC_FILE).catch((error: NodeJS.ErrnoException) => {
        throw error.code === 'ENOENT' ? new HttpError(404, 'openapi.yaml is not deployed with this gateway.') : error;
      });
      ctx.type = 'application/yaml; charset=utf-8';
    } else if (ctx.path === '/docs') {
      ctx.state.route = ctx.path;
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = PAGE;
    } else if (Object.hasOwn(ASSETS, asset)) {
      ctx.state.route = ctx.path;
      ctx.body = await readFile(join(SWAGGER_UI_DIR, asset));
      ctx.type = ASSETS[asset]!;
      ctx.set('Cache-Control', 'public, max-age=86400');
    } else {
      await next();
    }
  };
}
