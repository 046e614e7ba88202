#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need when it is missing
# (Debian packages, needs root or sudo; the pinned Claude Code CLI from npm), runs every
# test on SQLite, then again on a PostgreSQL server of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
command -v python3 >/dev/null || missing+=(python3)
[ -x /usr/bin/chromium ] || missing+=(chromium)   # the dashboard's browser tests
# npm fetches playwright-core and the pinned Claude Code and Codex CLIs (native binaries).
command -v npm >/dev/null || missing+=(nodejs npm)
command -v bwrap >/dev/null || missing+=(bubblewrap)   # agent.sandbox = "bubblewrap"
# README's "Try it locally" is run as written (process::the_readme_try_it_locally_works_as_written).
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
# The local SMTP server the email notification tests send to (tests/it/notify.rs).
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || missing+=(python3-aiosmtpd)
# git.signing_key signs with ssh-keygen -Y sign (attribution::commits_signed_...).
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d tests/browser/node_modules ]; then
  echo "== playwright-core for the browser tests"
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

# GitHub's webhook examples and REST OpenAPI description, and gitea-js's types generated from
# Gitea's swagger (tests/it/corpus.rs, openapi.rs).
if [ ! -f tests/octokit/node_modules/@octokit/openapi/generated/api.github.com.json ] \
   || [ ! -f tests/octokit/node_modules/@octokit/webhooks-examples/api.github.com/index.json ] \
   || [ ! -f tests/octokit/node_modules/gitea-js/dist/index.d.ts ]; then
  echo "== the forges' API descriptions and GitHub's webhook examples (tests/octokit)"
  (cd tests/octokit && npm ci --no-audit --no-fund --ignore-scripts)
fi

# The pinned Claude Code CLI that tests/it/real_claude.rs runs (versions in tests/claude/).
# A pin changed since the last install also reinstalls (node_modules is git-ignored).
pinned_claude=$(python3 -c 'import json; print(json.load(open("tests/claude/package.json"))["dependencies"]["@anthropic-ai/claude-code"])')
installed_claude=$(python3 -c 'import json; print(json.load(open("tests/claude/node_modules/@anthropic-ai/claude-code/package.json"))["version"])' 2>/dev/null || true)
if [ ! -x tests/claude/node_modules/@anthropic-ai/claude-code-linux-x64/claude ] || [ "$pinned_claude" != "$installed_claude" ]; then
  echo "== installing the pinned Claude Code CLI (tests/claude)"
  (cd tests/claude && npm ci --no-audit --no-fund --ignore-scripts)
fi

# The pinned OpenAI Codex CLI that tests/it/real_codex.rs runs (versions in tests/codex/).
if [ ! -x tests/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex ]; then
  echo "== installing the pinned Codex CLI (tests/codex)"
  (cd tests/codex && npm ci --no-audit --no-fund --ignore-scripts)
fi

echo "== tests on SQLite"
cargo test --workspace --locked

echo "== tests on PostgreSQL"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_dir=$(mktemp -d /tmp/forgehand-test-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "$(id -u)" = 0 ]; then
  chown postgres "$pg_dir"
  as_pg() { su postgres -s /bin/sh -c "$*"; }
else
  as_pg() { sh -c "$*"; }
fi
as_pg "$pg_bin/initdb -D $pg_dir/data -A trust -U forgehand" >/dev/null
as_pg "$pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/log -w -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off' start" >/dev/null
trap 'as_pg "$pg_bin/pg_ctl -D $pg_dir/data -m fast stop" >/dev/null 2>&1 || true; rm -rf "$pg_dir"' EXIT
FORGEHAND_TEST_POSTGRES="postgres://forgehand@127.0.0.1:$pg_port" cargo test --locked --test it
