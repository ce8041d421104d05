// Tries one AMQP login, for the isolation checks of the Vagrant stage (run in a guest's network namespace).
//   node --import tsx tests/vagrant/amqp-login.ts HOST PORT USER PASSWORD VHOST
// Prints `accepted` (exit 0), or `refused: <the broker's or the socket's reason>` (exit 1).
import amqp from 'amqplib';

const [hostname, port, username, password, vhost] = process.argv.slice(2);
try {
  const connection = await amqp.connect(
    { protocol: 'amqp', hostname, port: Number(port), username, password, vhost },
    { timeout: 5000 },
  );
  await connection.close();
  console.log('accepted');
  process.exit(0);
} catch (error) {
  console.log(`refused: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
