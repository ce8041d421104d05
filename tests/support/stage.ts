import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { vagrantVms } from './vagrantfile.js';

/**
 * The Vagrant stage's machines, and the knobs of its scale test (tests/vagrant/scale.test.ts):
 *   VAGRANT_CWD            the checkout whose Vagrantfile and .vagrant/ hold the machines (this one by default)
 *   SCALE_ON_VM            a command that runs `MACHINE COMMAND…` as root on a machine (the stage's on-vm)
 *   SCALE_CHAOS_ORDERS, SCALE_CHAOS_RATE   at least this many orders (2,000), this many per second (100)
 *   SCALE_BROKER_VM        the billing VM whose broker is stopped (billing-vm: the one api-gateway connects to
 *                          first); the last billing VM is the one halted
 */
const env = process.env;
const checkout = env.VAGRANT_CWD ?? fileURLToPath(new URL('../..', import.meta.url));

export const stage = {
  /**
   * The billing VMs, billing-vm first, as the Vagrantfile derived them from .env; before Vagrant has run (mocha
   * --dry-run), the one of the default .env.
   */
  billingVms: existsSync(path.join(checkout, '.vagrant/inventory.json'))
    ? vagrantVms(checkout)
        .filter((vm) => vm.group === 'billing')
        .map((vm) => vm.name)
    : ['billing-vm'],
  onVm: env.SCALE_ON_VM ?? 'false',
  orders: Number(env.SCALE_CHAOS_ORDERS ?? 2_000),
  rate: Number(env.SCALE_CHAOS_RATE ?? 100),
  brokerVm: env.SCALE_BROKER_VM ?? 'billing-vm',
};
