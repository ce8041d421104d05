import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { parse } from 'yaml';
import { namedValues } from '@crud-master/test-support/env';
import { ansibleProbe, copyForVagrantfile, loadVagrantfile, vagrantVms } from '@crud-master/test-support/vagrantfile';

/**
 * The VMs (names, groups, addresses, secrets) are derived from .env in one place, the Vagrantfile. It writes them into
 * .vagrant/inventory.json, which `make provision` and the stage's tests read, and hands the same list to
 * ansible_local. Here in a scratch checkout, with Vagrant stubbed and Ansible reading what it wrote.
 */
describe('the VMs of .env, as the Vagrantfile derives them', () => {
  let work: string;
  let checkout: string;
  /** Writes the checkout's .env: .env.example with OVERRIDES, each empty secret filled. */
  const writeEnv = (overrides: Record<string, string>) => {
    const example = namedValues(readFileSync(path.join(checkout, '.env.example'), 'utf8'));
    const env = { ...example, ...overrides };
    const lines = Object.entries(env).map(([name, value]) => `${name}=${value || `secret-of-${name}`}`);
    writeFileSync(path.join(checkout, '.env'), `${lines.join('\n')}\n`, { mode: 0o600 });
  };

  before(() => {
    work = mkdtempSync(path.join(tmpdir(), 'crud-master-vms-'));
    checkout = copyForVagrantfile(path.join(work, 'checkout'));
    writeEnv({ BILLING_VM_COUNT: '3', BILLING_VM_IP: '10.1.2.20', GATEWAY_VM_IP: '10.1.2.5', MONITOR_VM: 'false' });
    const loaded = loadVagrantfile(checkout, ['status']);
    expect(loaded.status, loaded.out).to.equal(0);
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  it(
    'When .env asks for 3 billing VMs and no monitor, ' +
      'then billing-vm, -2 and -3 take the addresses from BILLING_VM_IP on, each with its group’s secrets',
    () => {
      const groupSecrets = parse(readFileSync(path.join(checkout, 'ansible/group_vars/all/env.yml'), 'utf8'))
        .crud_master_group_secrets as Record<string, string[]>;
      const example = namedValues(readFileSync(path.join(checkout, '.env.example'), 'utf8'));
      const vm = (name: string, group: string, ip: string) => ({ name, group, ip, secrets: groupSecrets[group] });
      expect(vagrantVms(checkout)).to.deep.equal([
        vm('billing-vm', 'billing', '10.1.2.20'),
        vm('billing-vm-2', 'billing', '10.1.2.21'),
        vm('billing-vm-3', 'billing', '10.1.2.22'),
        vm('inventory-vm', 'inventory', example.INVENTORY_VM_IP!),
        vm('gateway-vm', 'gateway', '10.1.2.5'),
      ]);
    },
  );

  /** What Ansible renders of the Jinja MSG for each host of the Vagrantfile's inventory (no host is contacted). */
  const rendered = (msg: string, task = '') =>
    ansibleProbe(checkout, `- hosts: all\n  gather_facts: false\n  tasks:\n    - debug: { msg: "${msg}" }\n${task}`, [
      '-i',
      path.join(checkout, '.vagrant/inventory.json'),
    ]).map((hosts) => Object.fromEntries(Object.entries(hosts).map(([host, seen]) => [host, seen.msg])));

  it("When Ansible reads that inventory, then each VM's address, peers, billing_db and targets follow it", () => {
    const [seen] = rendered(
      '{{ [ansible_host, crud_master_own_ip, crud_master_billing_peer_ips, crud_master_billing_db_host,' +
        " crud_master_scrape_configs | selectattr('job_name', 'eq', 'billing-consumer') | first] }}",
    );
    const peers = ['10.1.2.20', '10.1.2.21', '10.1.2.22'];
    const consumers = { job_name: 'billing-consumer', static_configs: [{ targets: peers.map((ip) => `${ip}:9120`) }] };
    expect(seen).to.deep.include({
      'billing-vm': ['10.1.2.20', '10.1.2.20', ['10.1.2.21', '10.1.2.22'], '127.0.0.1', consumers],
      'billing-vm-3': ['10.1.2.22', '10.1.2.22', ['10.1.2.20', '10.1.2.21'], '10.1.2.20', consumers],
      'gateway-vm': ['10.1.2.5', '10.1.2.5', peers, '10.1.2.20', consumers],
    });
    expect(Object.keys(seen!)).to.have.members([
      'billing-vm',
      'billing-vm-2',
      'billing-vm-3',
      'inventory-vm',
      'gateway-vm',
    ]);
  });

  it("When group_vars' filters count ports, then nftables' ranges and Prometheus' targets; 0 is refused", () => {
    const [seen, refused] = rendered(
      "{{ ['9100' | crud_master_port_range(10), 9200 | crud_master_port_range(1)," +
        " ['a', 'b'] | crud_master_endpoints('9100', 2), [] | crud_master_endpoints(1)] }}",
      `    - debug: { msg: "{{ 9100 | crud_master_port_range(0) }}" }\n      ignore_errors: true\n`,
    );
    expect(seen!['gateway-vm']).to.deep.equal(['9100-9109', '9200', ['a:9100', 'a:9101', 'b:9100', 'b:9101'], []]);
    expect(refused!['gateway-vm']).to.include('count must be 1 or more');
  });

  it('When the billing VMs would go past .254, then the Vagrantfile refuses, and says why', () => {
    writeEnv({ BILLING_VM_COUNT: '3', BILLING_VM_IP: '10.1.2.253' });
    const loaded = loadVagrantfile(checkout, ['status']);
    expect(loaded.status).to.not.equal(0);
    expect(loaded.out).to.include('go past .254');
  });
});
