#!/usr/bin/env bash
# Runs the real Claude Code CLI tests (tests/it/real_claude.rs) against each version in
# $VERSIONS, each installed from npm into a scratch directory: which releases forgehand's
# flags and stream reader work with. Exits non-zero if any version fails.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${VERSIONS:?set VERSIONS, e.g. VERSIONS=\"2.1.330 2.1.332\"}"
scratch=$(mktemp -d /tmp/forgehand-agent-compat.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

cargo build --locked --test it
failed=()
for version in $VERSIONS; do
  echo "== Claude Code $version"
  dir="$scratch/$version"
  mkdir -p "$dir"
  (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --no-save "@anthropic-ai/claude-code@$version" >/dev/null)
  binary="$dir/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
  if [ ! -x "$binary" ]; then
    echo "   no linux-x64 binary in @anthropic-ai/claude-code@$version"
    failed+=("$version")
    continue
  fi
  if FORGEHAND_TEST_CLAUDE="$binary" FORGEHAND_TEST_CLAUDE_VERSION="$version" \
      cargo test --locked --test it real_claude; then
    echo "   $version: passed"
  else
    failed+=("$version")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "== failed: ${failed[*]}"
  exit 1
fi
echo "== every version passed: $VERSIONS"
