import { expect } from 'chai';
import { createLogger } from '../src/logger.js';

describe('shared: the logs on stdout', () => {
  /** Keeps what is written to stdout (each write a message to the PM2 daemon) until restored. */
  function captureStdout() {
    const writes: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (chunk: string | Uint8Array) => writes.push(String(chunk)) > 0;
    return { writes, restore: () => (process.stdout.write = write) };
  }
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it(
    'When a service logs lines over several turns of the event loop, ' +
      'then they reach stdout a moment later, in one write',
    async () => {
      const logger = createLogger('test-batching');
      const { writes, restore } = captureStdout();
      try {
        for (let i = 0; i < 20; i++) {
          logger.info({ i }, 'request');
          await new Promise(setImmediate);
        }
        expect(writes, 'written before 50 ms').to.have.length(0);
        await pause(120);
      } finally {
        restore();
      }
      expect(writes).to.have.length(1);
      expect(
        writes[0]!
          .trim()
          .split('\n')
          .map((line) => (JSON.parse(line) as { i: number }).i),
      ).to.deep.equal([...Array(20).keys()]);
    },
  );

  it('When 64 KB of lines are waiting, then they are written at once', async () => {
    const logger = createLogger('test-batching');
    const { writes, restore } = captureStdout();
    try {
      for (let i = 0; i < 1000; i++) logger.info({ padding: 'x'.repeat(100) }, 'request');
      expect(writes.length, 'writes before the timer').to.be.at.least(1);
      await pause(120);
    } finally {
      restore();
    }
    expect(writes.join('').trim().split('\n')).to.have.length(1000);
  });
});
