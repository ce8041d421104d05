import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsPlugin from 'ajv-formats';
import { parse } from 'yaml';

/**
 * The contract test: every response a test receives must be one that openapi.yaml describes for its path and
 * method: the status, the content type, the body's schema and the required headers. inventory-api and
 * billing-consumer serve the gateway's paths with the same shapes, so their responses are held to it too.
 */

const SPEC_KEY = 'openapi.yaml';
const spec = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8'));

// ajv-formats is CommonJS: under ESM its default export is the module object
const addFormats = addFormatsPlugin as unknown as typeof addFormatsPlugin.default;

/** An ajv that knows the whole document, so that '#/components/...' references resolve in it. */
function ajvWithSpec(coerceTypes: boolean) {
  // OpenAPI keywords (example, discriminator, ...) sit next to the schema keywords: not errors here
  const ajv = new Ajv2020({ allErrors: true, strict: false, coerceTypes });
  addFormats(ajv);
  ajv.addSchema(spec, SPEC_KEY);
  return ajv;
}
const bodies = ajvWithSpec(false);
// header values are strings on the wire: Retry-After: 5 is a valid integer
const headerValues = ajvWithSpec(true);

type Node = Record<string, any>;
const escapePointer = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

/** The node at a JSON pointer, following OpenAPI $refs (responses, headers); returns where it really is. */
function resolve(pointer: string): { node: Node; pointer: string } {
  const node = pointer
    .slice(2)
    .split('/')
    .reduce((parent: Node, key) => parent?.[key.replace(/~1/g, '/').replace(/~0/g, '~')], spec);
  if (node === undefined) throw new Error(`contract: openapi.yaml has nothing at ${pointer}`);
  return typeof node.$ref === 'string' ? resolve(node.$ref) : { node, pointer };
}

const templates = Object.keys(spec.paths).map((template: string) => ({
  template,
  pattern: new RegExp(
    `^${template
      .split(/\{[^}]+\}/)
      .map((part) => part.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))
      .join('[^/]+')}$`,
  ),
}));

/** The spec's path for a request path: a literal one first, then a templated one. */
const pathOf = (path: string) =>
  templates.find(({ template }) => template === path)?.template ??
  templates.find(({ pattern }) => pattern.test(path))?.template;

function check(ajv: Ajv2020, schemaPointer: string, data: unknown, what: string): string[] {
  const validate = ajv.getSchema(`${SPEC_KEY}${encodeURI(schemaPointer)}`);
  if (!validate) return [`${what}: openapi.yaml has no schema at ${schemaPointer}`];
  if (validate(data)) return [];
  return validate.errors!.map(
    ({ instancePath, message, params }) =>
      `${what}${instancePath} ${message}${params.additionalProperty ? ` (${params.additionalProperty})` : ''}`,
  );
}

function checkResponse(responsePointer: string, status: number, headers: Headers, body: unknown): string[] {
  const { node: response, pointer } = resolve(responsePointer);
  const problems: string[] = [];
  for (const name of Object.keys(response.headers ?? {})) {
    const { node: header, pointer: headerPointer } = resolve(`${pointer}/headers/${escapePointer(name)}`);
    const value = headers.get(name);
    if (value === null) {
      if (header.required) problems.push(`header ${name} is missing`);
    } else {
      problems.push(
        ...check(headerValues, `${headerPointer}/schema`, value, `header ${name}`).map((p) => `${p} (${value})`),
      );
    }
  }
  const mediaType = (headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (response.content === undefined) {
    if (body !== '' || mediaType !== '')
      problems.push(`a ${status} has no body, but it came with ${mediaType || 'one'}`);
  } else if (response.content[mediaType] === undefined) {
    problems.push(`content type "${mediaType}" is not one of ${Object.keys(response.content).join(', ')}`);
  } else {
    problems.push(...check(bodies, `${pointer}/content/${escapePointer(mediaType)}/schema`, body, 'body'));
    // RFC 9457: a problem's status is the response's; a schema cannot say so
    if (mediaType === 'application/problem+json' && (body as Node).status !== status)
      problems.push(`the problem's status is ${(body as Node).status}`);
  }
  return problems;
}

/** Throws unless openapi.yaml describes this response to this request. */
export function assertContract(method: string, url: string, status: number, headers: Headers, body: unknown): void {
  const { pathname, port } = new URL(url);
  // the RabbitMQ management API, which the end-to-end suite reads, is the broker's own API, not ours
  if (port === (process.env.RABBITMQ_UI_PORT ?? '15672')) return;
  const template = pathOf(pathname);
  const operation = template === undefined ? undefined : spec.paths[template][method.toLowerCase()];
  let problems: string[];
  if (operation === undefined) {
    // an unlisted path (404) or method (405 with Allow): the server must say so, as a problem
    const expected = template === undefined ? 404 : 405;
    problems =
      status === expected
        ? checkResponse('#/components/responses/NotFound', status, headers, body)
        : [`${method} ${template ?? pathname} is not in openapi.yaml, yet it answered ${status}`];
    if (expected === 405 && !headers.get('allow')) problems.push('a 405 without an Allow header');
  } else {
    const responses = `#/paths/${escapePointer(template!)}/${method.toLowerCase()}/responses`;
    const code = [String(status), `${String(status)[0]}XX`, 'default'].find(
      (key) => operation.responses[key] !== undefined,
    );
    problems =
      code === undefined
        ? [`status ${status} is not documented`]
        : checkResponse(`${responses}/${code}`, status, headers, body);
  }
  if (problems.length > 0) {
    throw new Error(
      `contract: ${method} ${pathname} → ${status} does not match openapi.yaml: ` +
        `${problems.join('; ')}\n${JSON.stringify(body)?.slice(0, 500)}`,
    );
  }
}
