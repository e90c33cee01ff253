#!/usr/bin/env bash
# Benchmarks: criterion's Signal::process bench, then the bench runner that mixes 8 and 64
# generated 60 s stereo stems with `loophole-node render` and with `sox -m` in the same run, on
# one thread (both pinned to CPU 0 with taskset) and on every core; it fails if the mix differs
# from sox's by more than 1e-6.
# Extra arguments go to the runner (e.g. `deploy/bench.sh --stems 8 --seconds 10`). Then the
# deadline benchmark: the null device paced in real time (LOAD_BLOCKS blocks per configuration,
# default 100000: about 20 minutes; e.g. `LOAD_BLOCKS=3000 deploy/bench.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo bench -p loophole-engine --bench signal --bench pulse
cargo build --release -p loophole-node -p loophole-tests --bin loophole-node --bin loophole-bench \
    --bin loophole-load-bench
"$target/release/loophole-bench" --node "$target/release/loophole-node" --criterion "$target/criterion" "$@"
"$target/release/loophole-load-bench" --blocks "${LOAD_BLOCKS:-100000}"
