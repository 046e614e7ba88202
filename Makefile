# forgehand — common tasks. `make help` lists them.

PREFIX ?= /usr/local
CONFIG_DIR ?= /etc/forgehand
UNIT_DIR ?= /etc/systemd/system
CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

.PHONY: help build run test lint fmt install bench bench-quick fuzz clean agent-compat

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build the release binary (target/release/forgehand)
	$(CARGO) build --release --locked

run: ## run the daemon on the embedded defaults (SQLite in ./data)
	$(CARGO) run --release --locked

test: ## every test, on SQLite and on PostgreSQL (installs missing test packages; the command CI runs)
	bash scripts/test.sh

lint: ## formatting, clippy (warnings are errors), and layers and import cycles (scripts/check-layers.py)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	python3 scripts/check-layers.py

fmt: ## format the code
	$(CARGO) fmt --all

install: build ## install binary, systemd unit and example config (as root)
	install -D -m 0755 target/release/forgehand $(DESTDIR)$(PREFIX)/bin/forgehand
	install -D -m 0644 systemd/forgehand.service $(DESTDIR)$(UNIT_DIR)/forgehand.service
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/forgehand/README.md
	@if [ ! -e $(DESTDIR)$(CONFIG_DIR)/forgehand.toml ]; then \
		install -D -m 0600 config/example.toml $(DESTDIR)$(CONFIG_DIR)/forgehand.toml; \
		echo "wrote $(DESTDIR)$(CONFIG_DIR)/forgehand.toml: edit it, then systemctl enable --now forgehand"; \
	fi
	@if [ -z "$(DESTDIR)" ] && ! id forgehand >/dev/null 2>&1; then \
		useradd --system --home-dir /var/lib/forgehand --shell /usr/sbin/nologin forgehand; \
	fi
	@if [ -z "$(DESTDIR)" ]; then chown forgehand:forgehand $(CONFIG_DIR)/forgehand.toml; fi

bench: ## build in release mode, run the benchmarks, write docs/benchmarks.md
	$(CARGO) build --release --locked -p forgehand -p forgehand-bench
	$(TARGET_DIR)/release/forgehand-bench --forgehand $(TARGET_DIR)/release/forgehand --out docs/benchmarks.md

bench-quick: ## a 3-minute make bench (one repeat, smaller databases), report in target/bench-quick.md
	$(CARGO) build --release --locked -p forgehand -p forgehand-bench
	$(TARGET_DIR)/release/forgehand-bench --quick --forgehand $(TARGET_DIR)/release/forgehand --out $(TARGET_DIR)/bench-quick.md

VERSIONS ?= 2.1.332

agent-compat: ## the real-CLI tests against each Claude Code version in VERSIONS="2.1.330 2.1.332"
	VERSIONS="$(VERSIONS)" bash scripts/agent-compat.sh

FUZZ_SECS ?= 60
FUZZ_TARGETS ?= signature payload trigger command branch

fuzz: ## run every fuzz target for FUZZ_SECS seconds (stable toolchain, needs g++)
	FUZZ_SECS=$(FUZZ_SECS) scripts/fuzz.sh $(FUZZ_TARGETS)

clean: ## remove build output
	$(CARGO) clean
