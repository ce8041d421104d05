import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { namedValues, readDotenv } from '@crud-master/test-support/env';
import { ansibleProbe, copyForVagrantfile, loadVagrantfile } from '@crud-master/test-support/vagrantfile';

/**
 * .env has one grammar (.env.example's header) and three readers, one per language that must read it:
 * ansible/dotenv.sh (the host scripts, the tests), the Vagrantfile's read_dotenv (Vagrant, Windows too)
 * and crud_master_env of group_vars/all/env.yml (Ansible). Each reads the same awkward lines; all must agree.
 */
describe('the readers of .env', () => {
  const repo = fileURLToPath(new URL('../..', import.meta.url));
  const AWKWARD = [
    '# a comment',
    '  export A="two words"  ',
    "B='x'",
    'C=a=b',
    'not a variable',
    'E=  spaced value  ',
    `F="mismatched'`,
    'G=a#b',
    'H="q # x"',
    'I = a blank before =',
    'K=first',
    "L='it''s'",
    'M=x"',
    'N=crlf\r',
    'P=',
    'Q=""',
    "R=\t'tab' ",
    '\texport\tS=tabs',
    'T="',
    'K=last',
  ];
  const READ = {
    A: 'two words',
    B: 'x',
    C: 'a=b',
    E: 'spaced value',
    F: `"mismatched'`,
    G: 'a#b',
    H: 'q # x',
    K: 'last',
    L: "it''s",
    M: 'x"',
    N: 'crlf',
    P: '',
    Q: '',
    R: 'tab',
    S: 'tabs',
    T: '"',
  };
  let work: string;
  let sample: string;
  before(() => {
    work = mkdtempSync(path.join(tmpdir(), 'crud-master-dotenv-'));
    sample = path.join(work, 'sample.env');
    writeFileSync(sample, `${AWKWARD.join('\n')}\n`);
    copyForVagrantfile(path.join(work, 'checkout'));
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  it('When ansible/dotenv.sh reads them (the tests through it), then it reads the grammar', () => {
    expect(readDotenv(sample)).to.deep.equal(READ);
  });

  it("When the Vagrantfile's read_dotenv reads them, then it agrees", () => {
    const read = loadVagrantfile(
      path.join(work, 'checkout'),
      [sample],
      'read_dotenv(ARGV[0]).each { |n, v| puts "#{n}=#{v}" }',
    );
    expect(read.status, read.out).to.equal(0);
    expect(namedValues(read.stdout)).to.deep.equal(READ);
  });

  it("When Ansible reads them (group_vars/all/env.yml's crud_master_env), then it agrees", () => {
    const [task] = ansibleProbe(
      path.join(work, 'checkout'),
      '- hosts: localhost\n  gather_facts: false\n  tasks:\n    - debug: { var: crud_master_env }\n',
      ['-i', 'localhost,', '-c', 'local', '-e', `crud_master_env_file=${sample}`],
    );
    expect(task!.localhost!.crud_master_env).to.deep.equal(READ);
  });

  it("When an app's env file holds #, quotes and blanks, then node --env-file reads each value as it is", () => {
    const values = {
      HASH: 'ab#cd',
      BLANKS: '  a b  ',
      SINGLE: "it's",
      DOUBLE: 'say "hi"',
      PLAIN: 'billing_vhost',
      NONE: '',
    };
    const playbook = path.join(work, 'app-env.yml');
    const file = path.join(work, 'app.env');
    const template = path.join(repo, 'roles/crud_service/templates/app.env.j2');
    writeFileSync(
      playbook,
      '- hosts: localhost\n  gather_facts: false\n  tasks:\n' +
        `    - template: { src: ${template}, dest: ${file}, mode: '0600' }\n`,
    );
    const vars = JSON.stringify({ crud_service_app: 'probe', crud_service_env: values });
    execFileSync('ansible-playbook', ['-i', 'localhost,', '-c', 'local', playbook, '-e', vars], { encoding: 'utf8' });
    const read = execFileSync(
      process.execPath,
      [
        `--env-file=${file}`,
        '-e',
        `console.log(JSON.stringify(${JSON.stringify(Object.keys(values))}.map((k) => process.env[k])))`,
      ],
      { encoding: 'utf8' },
    );
    expect(JSON.parse(read), readFileSync(file, 'utf8')).to.deep.equal(Object.values(values));
  });
});
