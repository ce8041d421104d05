import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stack } from '@crud-master/test-support/stack';
import { expect } from 'chai';
import { parse } from 'yaml';

const { gateway } = stack;
const spec = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8'));
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

/** The page's DOM after its scripts ran, as Debian's headless Chromium renders it (no network but the gateway). */
function renderedDom(url: string): string {
  const profile = mkdtempSync(join(tmpdir(), 'chromium-'));
  try {
    return execFileSync(
      'chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        `--user-data-dir=${profile}`,
        // lets Swagger UI fetch /openapi.yaml and render before the DOM is dumped
        '--virtual-time-budget=10000',
        '--dump-dom',
        url,
      ],
      { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'ignore'] },
    );
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

describe('the deployed Swagger UI (GET /docs in headless Chromium)', () => {
  it('When /docs is rendered, then every operation of openapi.yaml is listed', () => {
    const dom = renderedDom(`${gateway}/docs`);
    const listed = [...dom.matchAll(/opblock-summary-method">(\w+)<\/span>.*?data-path="([^"]+)"/g)].map(
      ([, method, path]) => `${method} ${path}`,
    );
    const operations = Object.entries<Record<string, unknown>>(spec.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((key) => HTTP_METHODS.includes(key))
        .map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(listed).to.include('POST /api/billing');
    expect(listed).to.have.members(operations);
  });
});
