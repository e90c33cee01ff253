#!/usr/bin/env bash
# Benchmarks: criterion's Signal::process bench, then the bench runner that mixes 8 and 64
# generated 60 s stereo stems with `loophole-node render` and with `sox -m` in the same run.
# Extra arguments go to the runner (e.g. `deploy/bench.sh --stems 8 --seconds 10`).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo bench -p loophole-engine --bench signal --bench pulse
cargo build --release -p loophole-node -p loophole-tests --bin loophole-node --bin loophole-bench
"$target/release/loophole-bench" --node "$target/release/loophole-node" --criterion "$target/criterion" "$@"
