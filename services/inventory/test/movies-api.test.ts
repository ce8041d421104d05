import { createDatabasePool, migrate } from '@crud-master/shared/database';
import { testEnv, unique } from '@crud-master/test-support/env';
import { request, urlOf } from '@crud-master/test-support/http';
import { expectProblem } from '@crud-master/test-support/problem';
import { expect } from 'chai';
import type { DatabasePool } from 'slonik';
import { sql } from 'slonik';
import type { InventoryApi } from '../src/app.js';
import { loadConfig, MIGRATIONS_DIR } from '../src/config.js';
import { PAGE_SIZE_MAX } from '../src/domain/movies.js';
import { startOnFreePort } from './inventory-under-test.js';

describe('inventory-api: the movies API', () => {
  let api: InventoryApi;
  let base: string;
  let pool: DatabasePool;

  before(async () => {
    const config = loadConfig(testEnv());
    await migrate(config.db, MIGRATIONS_DIR);
    pool = await createDatabasePool(config.db);
    api = await startOnFreePort();
    base = urlOf(api.server);
  });

  after(async () => {
    await api.stop();
    await pool.end();
  });

  const create = async (title: string, description = 'a test movie') => {
    const reply = await request(`${base}/api/movies`, { method: 'POST', json: { title, description } });
    expect(reply.status, JSON.stringify(reply.body)).to.equal(201);
    return reply;
  };

  describe('POST /api/movies', () => {
    it('When a valid movie is posted, then it answers 201 with the movie and its Location', async () => {
      const title = unique('Inception');
      const reply = await create(title, 'dreams within dreams');
      expect(reply.body).to.deep.equal({ id: reply.body.id, title, description: 'dreams within dreams' });
      expect(reply.body.id).to.be.a('number').above(0);
      expect(reply.headers.get('location')).to.equal(`/api/movies/${reply.body.id}`);
      const stored = await pool.one(sql.unsafe`SELECT title, description FROM movies WHERE id = ${reply.body.id}`);
      expect(stored).to.deep.equal({ title, description: 'dreams within dreams' });
    });

    it('When the description is left out, then it is stored empty', async () => {
      const reply = await request(`${base}/api/movies`, { method: 'POST', json: { title: unique('No description') } });
      expect(reply.status).to.equal(201);
      expect(reply.body.description).to.equal('');
    });

    const invalidBodies: Array<[string, unknown]> = [
      ['the title is missing', { description: 'x' }],
      ['the title is blank', { title: '   ' }],
      ['the title is not a string', { title: 42 }],
      ['the title holds a NUL byte', { title: 'a\u0000b' }],
      ['the title is too long', { title: 'x'.repeat(256) }],
      ['the description is not a string', { title: 'x', description: ['y'] }],
      ['the body is an array', [{ title: 'x' }]],
    ];
    for (const [when, body] of invalidBodies) {
      it(`When ${when}, then it answers 400 problem+json`, async () => {
        expectProblem(await request(`${base}/api/movies`, { method: 'POST', json: body }), 400, /Invalid body/);
      });
    }

    it('When the body is malformed JSON, then it answers 400', async () => {
      const reply = await request(`${base}/api/movies`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"title":',
      });
      expectProblem(reply, 400);
    });

    it('When the body is not JSON, then it answers 415', async () => {
      const reply = await request(`${base}/api/movies`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: 'title=x',
      });
      expectProblem(reply, 415);
    });

    it('When the body is over the limit, then it answers 413', async () => {
      const reply = await request(`${base}/api/movies`, {
        method: 'POST',
        json: { title: 'big', description: 'x'.repeat(70_000) },
      });
      expectProblem(reply, 413);
    });
  });

  describe('GET /api/movies', () => {
    it('When titles are searched, then the match is a case-insensitive substring', async () => {
      const tag = unique('Matrix');
      const [a, b] = [await create(`The ${tag} Reloaded`), await create(`${tag.toUpperCase()} Revolutions`)];
      await create(unique('Other'));
      const reply = await request(`${base}/api/movies?title=${encodeURIComponent(tag.toLowerCase())}`);
      expect(reply.status).to.equal(200);
      expect(reply.body.map((m: { id: number }) => m.id)).to.deep.equal([a.body.id, b.body.id]);
    });

    it('When the search holds % or _, then they match literally, not as wildcards', async () => {
      const tag = unique('wild');
      const percent = await create(`${tag} 100% pure`);
      const underscore = await create(`${tag} snake_case`);
      await create(`${tag} 100 pure`);
      await create(`${tag} snakeXcase`);
      const byPercent = await request(`${base}/api/movies?title=${encodeURIComponent(`${tag} 100%`)}`);
      expect(byPercent.body.map((m: { id: number }) => m.id)).to.deep.equal([percent.body.id]);
      const byUnderscore = await request(`${base}/api/movies?title=${encodeURIComponent('snake_case')}`);
      expect(byUnderscore.body.map((m: { id: number }) => m.id))
        .to.include(underscore.body.id)
        .and.have.length(1);
    });

    it('When limit and offset are given, then the page is bounded and ordered by id', async () => {
      const tag = unique('Page');
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) ids.push((await create(`${tag} ${i}`)).body.id);
      const page = await request(`${base}/api/movies?title=${tag}&limit=2&offset=1`);
      expect(page.body.map((m: { id: number }) => m.id)).to.deep.equal(ids.slice(1, 3));
    });

    it('When no limit is given, then at most the default page size comes back', async () => {
      const reply = await request(`${base}/api/movies`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.be.an('array');
      expect(reply.body.length).to.be.at.most(50);
    });

    for (const query of [`limit=${PAGE_SIZE_MAX + 1}`, 'limit=0', 'limit=abc', 'offset=-1', 'limit=1.5', 'title=%00']) {
      it(`When the query is ${query}, then it answers 400`, async () => {
        expectProblem(await request(`${base}/api/movies?${query}`), 400, /Invalid query/);
      });
    }
  });

  describe('GET, PUT and DELETE /api/movies/:id', () => {
    it('When a movie exists, then GET returns it', async () => {
      const created = await create(unique('Alien'));
      const reply = await request(`${base}/api/movies/${created.body.id}`);
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal(created.body);
    });

    it('When PUT sends only the title, then only the title changes', async () => {
      const created = await create(unique('Old title'), 'kept');
      const title = unique('New title');
      const reply = await request(`${base}/api/movies/${created.body.id}`, { method: 'PUT', json: { title } });
      expect(reply.status).to.equal(200);
      expect(reply.body).to.deep.equal({ id: created.body.id, title, description: 'kept' });
      expect((await request(`${base}/api/movies/${created.body.id}`)).body.title).to.equal(title);
    });

    it('When PUT sends only the description, then only the description changes', async () => {
      const created = await create(unique('Same title'), 'before');
      const reply = await request(`${base}/api/movies/${created.body.id}`, {
        method: 'PUT',
        json: { description: 'after' },
      });
      expect(reply.body).to.deep.equal({ id: created.body.id, title: created.body.title, description: 'after' });
    });

    it('When PUT sends no field, then it answers 400', async () => {
      const created = await create(unique('Unchanged'));
      expectProblem(await request(`${base}/api/movies/${created.body.id}`, { method: 'PUT', json: {} }), 400);
    });

    it('When DELETE removes a movie, then it answers 204 and the movie is gone', async () => {
      const created = await create(unique('Doomed'));
      const reply = await request(`${base}/api/movies/${created.body.id}`, { method: 'DELETE' });
      expect(reply.status).to.equal(204);
      expectProblem(await request(`${base}/api/movies/${created.body.id}`), 404);
    });

    for (const method of ['GET', 'PUT', 'DELETE']) {
      it(`When ${method} names an unknown id, then it answers 404 problem+json`, async () => {
        const reply = await request(`${base}/api/movies/9000000000000000000`, {
          method,
          json: method === 'PUT' ? { title: 'x' } : undefined,
        });
        expectProblem(reply, 404, /does not exist/);
      });

      for (const id of ['abc', '0', '-1', '1.5', '99999999999999999999', '%00']) {
        it(`When ${method} names the id ${id}, then it answers 400, never 500`, async () => {
          const reply = await request(`${base}/api/movies/${id}`, {
            method,
            json: method === 'PUT' ? { title: 'x' } : undefined,
          });
          expectProblem(reply, 400, /Invalid id/);
        });
      }
    }
  });

  describe('DELETE /api/movies', () => {
    it('When all movies are deleted, then it answers 204 and the list is empty', async () => {
      await create(unique('Going'));
      const reply = await request(`${base}/api/movies`, { method: 'DELETE' });
      expect(reply.status).to.equal(204);
      expect((await request(`${base}/api/movies`)).body).to.deep.equal([]);
      expect(await pool.oneFirst(sql.unsafe`SELECT count(*)::int FROM movies`)).to.equal(0);
    });
  });
});
