# crud-master — `make help` lists the targets.
#
# The targets that read .env first make it from .env.example when it is missing, or add the variables it lacks
# (ansible/make-env.sh: a random value in each empty *_PASSWORD and *_COOKIE; the values .env has stay). The others,
# `make help` among them, leave .env alone.
# The targets install what they need from Debian/Ubuntu packages when it is missing (as root, or through sudo).

# POSIX sh and GNU make 3.81 (macOS's, which ignores .SHELLFLAGS): a recipe line of several commands starts with
# `set -e`, and the host-side scripts are POSIX sh too (make lint-infra checks them under dash and posh).
SHELL := /bin/sh
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# apt-get and the like: directly as root, else through sudo.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

# Ansible reads ansible/ansible.cfg (roles_path, pipelining) wherever make runs from.
export ANSIBLE_CONFIG := $(CURDIR)/ansible/ansible.cfg
PLAYBOOK := ansible/site.yml
LOCAL_INVENTORY := ansible/local.ini
# The VMs' inventory, which the Vagrantfile writes from .env whenever Vagrant loads it (make inventory).
VM_INVENTORY := .vagrant/inventory.json
# More ansible-playbook arguments, e.g. `make local ANSIBLE_ARGS='--tags deploy -v'` or `-K` for a sudo password.
ANSIBLE_ARGS ?=
# The gateway that `make postman` runs the Postman collection against.
BASE_URL ?= http://localhost:8080

# Packages per purpose (Debian 12 / Ubuntu 22.04 names). Ansible itself: see deps-ansible.
DEPS_BASE := python3-apt sudo rsync openssl
DEPS_LINT := ansible-lint yamllint ruby shellcheck posh
# The end-to-end suite loads the Swagger UI in headless Chromium; the component suite runs make inventory (Vagrant).
DEPS_TEST := chromium curl vagrant
# The peer proxies that make bench starts with configurations of its own: nginx, and Go's httputil (golang-go builds
# bench/peers/go-proxy.go).
DEPS_BENCH := nginx-light golang-go

# Installs the packages named in $(1) that are not installed yet (one apt-get update, only when needed), then runs the
# shell commands $(2), if any, which see the list installed in $$missing.
define apt_ensure
	@set -e; command -v dpkg-query >/dev/null || { echo "Not a Debian/Ubuntu host: install $(1) yourself."; exit 0; }; \
	missing=""; \
	for pkg in $(1); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  $(APT_INSTALL) $$missing; \
	  $(2) \
	fi
endef

##@ Help

# make help's column of target names; lint-infra keeps each line within 80 columns.
HELP_NAME_WIDTH := 20

.PHONY: help
help: ## List the targets
	@awk -v width=$(HELP_NAME_WIDTH) 'BEGIN { FS = ":.*## " } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5); next } \
	  /^[a-zA-Z0-9_.-]+:.*## / { printf "  \033[36m%-" width "s\033[0m %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo

##@ Setup

.env: .env.example FORCE ## Make .env from .env.example, or add what it lacks
	@ansible/make-env.sh

# .env is checked by every target that needs it (FORCE): it gains the variables a newer .env.example brought.
.PHONY: FORCE
FORCE:

# Ansible from the distribution; on Ubuntu from Ansible's PPA, as Vagrant's ansible_local installs it there: Ubuntu
# 22.04's own (2.10) is older than the roles' min_ansible_version (2.14). Then ansible/collections.sh checks the
# collections against ansible/requirements.yml and runs ansible-galaxy with that file only when one is missing or too
# old (Debian 12's `ansible` package has them all: nothing contacts Ansible Galaxy there).
.PHONY: deps-ansible
deps-ansible: ## Install Ansible and its collections when missing
	$(call apt_ensure,$(DEPS_BASE))
	@set -e; if ! command -v ansible-playbook >/dev/null; then \
	  command -v apt-get >/dev/null || { echo "Ansible is missing (no apt-get: install it yourself)." >&2; exit 1; }; \
	  echo "Installing Ansible"; \
	  $(SUDO) apt-get update -qq; \
	  if grep -qi '^ID=ubuntu' /etc/os-release; then \
	    $(APT_INSTALL) software-properties-common; \
	    $(SUDO) add-apt-repository -y ppa:ansible/ansible; \
	  fi; \
	  $(APT_INSTALL) ansible; \
	fi
	@ansible/collections.sh install

.PHONY: deps-test
deps-test: ## Install what the suites use (Chromium, curl, Vagrant)
	$(call apt_ensure,$(DEPS_TEST))

.PHONY: deps-lint
deps-lint: deps-ansible ## Install the linters (DEPS_LINT) when missing
	$(call apt_ensure,$(DEPS_LINT))

##@ VMs (Vagrant: VirtualBox, or Docker with PROVIDER=docker)

# Vagrant's provider: virtualbox (VMs), or docker (systemd containers from `make box`, for hosts without VirtualBox).
PROVIDER ?= virtualbox
# The billing VMs (billing-vm, billing-vm-2 …, as Vagrant matches a /regular expression/) and inventory-vm come up
# first (the docker provider in parallel): gateway-vm's deploy waits until inventory-api and RabbitMQ answer.
BACKEND_VMS := '/^billing-vm/' inventory-vm

# The VMs' SSH host keys, pinned for `make provision` (its inventory checks them strictly).
KNOWN_HOSTS := .vagrant/known_hosts

# gateway-vm, inventory-vm, the billing VMs and monitor-vm of .env; with PROVIDER=docker, `make box` first.
.PHONY: up
up: .env $(if $(filter docker,$(PROVIDER)),box) ## Create and provision the VMs (PROVIDER=virtualbox|docker)
	vagrant up --provider=$(PROVIDER) $(BACKEND_VMS)
	vagrant up --provider=$(PROVIDER)
	$(MAKE) known-hosts

# Read over `vagrant ssh`'s own channel (authenticated by the key Vagrant made for each machine), once per `make up`.
.PHONY: known-hosts
known-hosts: .env ## Pin the VMs' SSH host keys for make provision
	vagrant ssh-config > .vagrant/ssh_config
	set -e; . ops/deployment.sh; for vm in $$(deployed_vms); do \
	  key=$$(on_vm "$$vm" cat /etc/ssh/ssh_host_ed25519_key.pub); \
	  echo "$$key" | awk -v vm="$$vm" '{ print vm, $$1, $$2 }'; \
	done > $(KNOWN_HOSTS).tmp
	mv $(KNOWN_HOSTS).tmp $(KNOWN_HOSTS)
	@echo "Pinned the SSH host keys of: $$(cut -d' ' -f1 $(KNOWN_HOSTS) | tr '\n' ' ')"

$(KNOWN_HOSTS):
	$(MAKE) known-hosts

# Vagrant loads the Vagrantfile, which derives the VMs from .env and writes their inventory (git ignores .vagrant/)
# when it changes; validate skips the provider's checks.
.PHONY: inventory
inventory: .env ## Write the VMs of .env into .vagrant/inventory.json
	@vagrant validate --ignore-provider > /dev/null

# Cached by a hash of box/; BOX_FROM=debootstrap|dockerfile|auto (box/build.sh says which when).
.PHONY: box
box: ## Build the docker provider's systemd image (Debian 12)
	box/build.sh

# ansible/site.yml with .vagrant/inventory.json; the same PROVIDER as make up.
.PHONY: provision
provision: .env inventory deps-ansible $(KNOWN_HOSTS) ## Re-run the playbook on the running VMs, over SSH
	ansible-playbook -i $(VM_INVENTORY) -e vagrant_provider=$(PROVIDER) $(PLAYBOOK) $(ANSIBLE_ARGS)

.PHONY: provision-idempotent
provision-idempotent: .env inventory deps-ansible $(KNOWN_HOSTS) ## Re-run it; fail unless every VM reports changed=0
	ansible/check-idempotent.sh $(VM_INVENTORY) -e vagrant_provider=$(PROVIDER) $(ANSIBLE_ARGS)

.PHONY: destroy
destroy: .env ## Destroy the VMs (docker: their containers and network)
	vagrant destroy -f
	rm -f $(KNOWN_HOSTS) .vagrant/ssh_config

##@ This host (no VirtualBox: the same playbook, all three services here)

# PostgreSQL, RabbitMQ, Node.js, PM2, the three services and the monitor: README.md says what it changes.
.PHONY: local
local: .env deps-ansible ## Provision THIS host with the whole stack
	@ansible/local.sh $(ANSIBLE_ARGS)

.PHONY: local-idempotent
local-idempotent: .env deps-ansible ## Re-run it here; fail unless it reports changed=0
	ansible/check-idempotent.sh $(LOCAL_INVENTORY) $(ANSIBLE_ARGS)

##@ Operating (the VMs after make up, else this host after make local)

# Each host's PM2 apps, each app's /readyz, billing_queue and its dead letters, the tables' rows, firing alerts.
.PHONY: status
status: ## One screen: apps, /readyz, queues, rows, alerts
	@ops/status.sh

# pino-pretty lines, every VM's at once: LOG_LINES=20 lines before, APP=one app.
.PHONY: logs
logs: ## Follow the apps' logs as readable lines
	@LOG_LINES='$(LOG_LINES)' APP='$(APP)' ops/logs.sh

# make restore's folder, e.g. BACKUP=backups/2026-12-07T031500Z
BACKUP ?=

# pg_dump of movies_db and billing_db, and RabbitMQ's definitions, into a folder on this host.
.PHONY: backup
backup: ## Back up the databases and RabbitMQ into backups/<date>/
	@ops/backup.sh save

# The movies as they were; the orders it lacks are added, those stored since are kept.
.PHONY: restore
restore: ## Restore BACKUP=backups/<date> (docs/backups.md)
	@ops/backup.sh restore '$(BACKUP)'

##@ Checks

# What the host-side targets run (.env, inventory, deps-ansible, box, provision, status, logs, backup, restore): POSIX
# sh, for a stock Mac; and ops/host-status.sh and ops/host-backup.sh, which each deployed host runs. make local and the
# test stages run on Linux only, and may use bash.
HOST_SCRIPTS := ansible/dotenv.sh ansible/make-env.sh ansible/collections.sh \
  ansible/check-idempotent.sh box/build.sh ops/deployment.sh ops/status.sh ops/logs.sh ops/host-status.sh \
  ops/backup.sh ops/host-backup.sh

# What GNU make 3.81 (macOS's) lacks: .SHELLFLAGS, .ONESHELL, .RECIPEPREFIX, undefine and `define NAME =` (3.82), `!=`
# and `::=` (4.0), the functions file, let and intcmp (4.0, 4.4). docs/testing.md: the run under a real 3.81.
MAKE_AFTER_381 := -e '^\.(SHELLFLAGS|ONESHELL|RECIPEPREFIX)' -e '^(undefine|private)[[:space:]]' \
  -e '^define[[:space:]]+[^[:space:]]+[[:space:]]+[:+?!]?=' -e '^[A-Za-z_][A-Za-z0-9_.-]*[[:space:]]*(::=|!=)' \
  -e '\$$\((file|let|intcmp|guile)[[:space:]]'

# ansible-playbook --syntax-check, ansible-lint, yamllint, ruby -c Vagrantfile, the shell scripts (the host-side
# ones under dash, posh and shellcheck -s sh), the Makefile against what make 3.81 lacks, and make help's width.
.PHONY: lint-infra
lint-infra: .env deps-lint ## Check the playbook, roles, Vagrantfile, Makefile, scripts
	ansible-playbook --syntax-check -i $(LOCAL_INVENTORY) $(PLAYBOOK)
	ANSIBLE_ROLES_PATH=$(CURDIR)/roles ansible-lint --offline $(PLAYBOOK) roles
	yamllint --strict ansible roles .ansible-lint .yamllint
	ruby -c Vagrantfile
	set -e; for f in ansible/*.sh box/*.sh tests/*.sh tests/provision/*.sh tests/vagrant/*.sh; do bash -n "$$f"; done
	set -e; for shell in dash posh; do for script in $(HOST_SCRIPTS); do $$shell -n "$$script"; done; done
	shellcheck -s sh $(HOST_SCRIPTS)
	@! grep -nE $(MAKE_AFTER_381) Makefile || { echo "Makefile: the lines above need a make newer than 3.81" >&2; exit 1; }
	@awk -v width=$(HELP_NAME_WIDTH) -F ':.*## ' \
	  '/^[a-zA-Z0-9_.-]+:.*## / && 3 + (length($$1) > width ? length($$1) : width) + length($$2) > 80 \
	  { print "Makefile: the help line of " $$1 " is over 80 columns"; bad = 1 } END { exit bad }' Makefile

.PHONY: lint
lint: lint-infra lint-ts lint-openapi ## Every static check: lint-infra, lint-ts, lint-openapi

# redocly.yaml: recommended-strict, so a warning fails too.
.PHONY: lint-openapi
lint-openapi: node_modules ## Lint openapi.yaml with Redocly
	npx @redocly/cli lint openapi.yaml

# knip: each npm workspace declares exactly the packages it imports (knip.jsonc).
.PHONY: lint-ts
lint-ts: build ## Prettier, tsc, ESLint and knip over the TypeScript
	npx prettier --check '**/*.{ts,js,cjs}'
	npx tsc -p tsconfig.test.json
	npx eslint .
	npx knip
	npx knip --strict --include unlisted,unresolved

##@ Tests

# How hard `make chaos` and `make fuzz` push (make test runs 2,000 orders and 2,000 hostile requests).
CHAOS_ORDERS ?= 2000
FUZZ_RUNS ?= 20000

# make local twice (changed=0), lint, then component, e2e, fuzz, chaos, Postman and the Vagrant stages.
.PHONY: test
test: .env deps-ansible deps-lint deps-test ## Provision this host, then every suite (what CI runs)
	SCALE_BILLING_VMS=$(SCALE_BILLING_VMS) tests/run-all.sh

# The suites and make bench import the services' compiled output (services/*/dist: @crud-master/shared, main.js),
# which only a build makes; tsc -b rebuilds only what changed.
.PHONY: build
build: node_modules ## Compile the services into services/*/dist (tsc -b)
	npm run build

# CHAOS_ORDERS orders while the consumer is killed and RabbitMQ and PostgreSQL restart (after make local).
.PHONY: chaos
chaos: .env build ## Orders while the consumer, broker and database fail
	CHAOS_ORDERS=$(CHAOS_ORDERS) npx mocha tests/chaos/orders-under-faults.test.ts

.PHONY: fuzz
fuzz: .env build ## Hostile requests to every route on :8080 (FUZZ_RUNS)
	FUZZ_RUNS=$(FUZZ_RUNS) npx mocha tests/fuzz/hostile-input.test.ts

.PHONY: postman
postman: node_modules ## Run the Postman collection against BASE_URL
	npx newman run postman/crud-master.postman_collection.json --env-var baseUrl=$(BASE_URL)

node_modules: package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

##@ The VM path with Vagrant (docker provider, in a network sandbox)

# make box, make up PROVIDER=docker, then e2e, Postman, the seed scenario over vagrant ssh, a reboot, the restore of
# a lost billing-vm, make destroy (tests/vagrant/vagrant-stage.sh).
.PHONY: vagrant-test
vagrant-test: deps-ansible ## The Vagrant stage: the VMs with the docker provider
	tests/vagrant/vagrant-stage.sh

# How many billing VMs make scale-test brings up (3: the fewest whose quorum survives a lost node). Its chaos run stops
# billing-vm's broker, the one api-gateway connects to first (SCALE_BROKER_VM=billing-vm-2 stops another one).
SCALE_BILLING_VMS ?= 3

# One RabbitMQ cluster with quorum queues, orders at 100/s while a broker stops and a billing VM halts; make
# provision (changed=0) and the isolation checks.
.PHONY: scale-test
scale-test: deps-ansible ## The Vagrant stage with SCALE_BILLING_VMS billing VMs
	VAGRANT_STAGE_BILLING_VMS=$(SCALE_BILLING_VMS) tests/vagrant/vagrant-stage.sh

##@ Benchmarks

# PROFILE=1: make bench also runs the proxy load against copies of api-gateway and inventory-api started under
# node --cpu-prof, and leaves their .cpuprofile files in bench/profiles/ (bench/README.md).
PROFILE ?= 0

# After make local: against its ceilings and nginx, Go and bare Node proxies, side by side (bench/README.md).
.PHONY: bench
bench: .env build deps-bench ## Benchmark the deployed stack: bench/results.json
	BENCH_PROFILE=$(PROFILE) npx tsx bench/run.ts

# The nginx package starts the distribution's nginx service on :80 as it installs: that one is stopped and disabled
# again, so that nginx runs only while the bench measures it.
NGINX_SERVICE_OFF = case "$$missing" in *nginx-light*) \
  $(SUDO) service nginx stop >/dev/null 2>&1 || true; $(SUDO) update-rc.d nginx disable >/dev/null 2>&1 || true;; esac;
.PHONY: deps-bench
deps-bench: ## Install nginx-light and golang-go when missing
	$(call apt_ensure,$(DEPS_BENCH),$(NGINX_SERVICE_OFF))
