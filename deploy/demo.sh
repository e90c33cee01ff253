#!/usr/bin/env bash
# Plays Loophole's built-in demo set, solo. With no sound card it plays on the node's own null
# device in real time and writes what it played to loophole-demo.wav in the current directory.
# Installs system packages first. Extra arguments go to `loophole-node demo`
# (e.g. `deploy/demo.sh --seconds 10`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/deploy/install-deps.sh"
exec cargo run --release --manifest-path "$root/Cargo.toml" -p loophole-node -- demo "$@"
