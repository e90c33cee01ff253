#!/usr/bin/env bash
# Runs every Loophole test: installs the system packages it needs first (deploy/install-deps.sh).
# Extra arguments go to `cargo test` (e.g. `deploy/test.sh -p loophole-engine`).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
exec cargo test --workspace --all-targets "$@"
