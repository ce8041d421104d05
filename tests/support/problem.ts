import { expect } from 'chai';
import type { Reply } from './http.js';

/** Asserts an RFC 9457 problem+json reply with the given status. */
export function expectProblem(reply: Reply, status: number, detail?: RegExp): void {
  expect(reply.status, JSON.stringify(reply.body)).to.equal(status);
  expect(reply.headers.get('content-type')).to.match(/^application\/problem\+json/);
  expect(reply.body).to.include({ type: 'about:blank', status });
  expect(reply.body.title).to.be.a('string').and.not.be.empty;
  expect(reply.body.detail).to.be.a('string').and.not.be.empty;
  if (detail) expect(reply.body.detail).to.match(detail);
}
