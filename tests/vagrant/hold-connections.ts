// Opens COUNT TCP connections to HOST:PORT at once and holds them, for the isolation checks of the Vagrant stage (run
// in a guest's network namespace: one source address).
//   node --import tsx tests/vagrant/hold-connections.ts HOST PORT COUNT HOLD_SECONDS
// Once every attempt has settled it prints `opened N refused M other K` (refused: a TCP reset to the SYN, which is
// what a firewall's `reject with tcp reset` sends; other: any other error or no answer in 5 s), then holds the opened
// connections for HOLD_SECONDS (or until it is stopped) and exits.
import { connect, type Socket } from 'node:net';

const [host, port, count, holdSeconds] = process.argv.slice(2);
const held: Socket[] = [];
const outcomes = await Promise.all(
  Array.from({ length: Number(count) }, () =>
    new Promise<'opened' | 'refused' | 'other'>((settle) => {
      const socket = connect({ host, port: Number(port), timeout: 5000 });
      socket.once('connect', () => {
        socket.setTimeout(0);
        held.push(socket);
        settle('opened');
      });
      socket.once('timeout', () => {
        socket.destroy();
        settle('other');
      });
      socket.once('error', (error: NodeJS.ErrnoException) => settle(error.code === 'ECONNREFUSED' ? 'refused' : 'other'));
    }),
  ),
);
const tally = (what: string) => outcomes.filter((outcome) => outcome === what).length;
console.log(`opened ${tally('opened')} refused ${tally('refused')} other ${tally('other')}`);
// A connection the server closes meanwhile is fine: it no longer counts against the source.
for (const socket of held) socket.on('error', () => {});
await new Promise((done) => setTimeout(done, Number(holdSeconds) * 1000));
for (const socket of held) socket.destroy();
process.exit(0);
