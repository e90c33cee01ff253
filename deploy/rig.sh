#!/usr/bin/env bash
# A band on one machine: a conductor and N null-audio nodes, each in a network namespace of its
# own on a bridge, as N laptops and a conductor box on a LAN would be.
#
#   deploy/rig.sh N [SET.toml]     (default: 3 nodes and the built-in demo set; needs root)
#
# It builds the binaries (release), starts `loophole-conductor serve` in namespace `rigc`, prints
# the join code and how to trigger, starts node `nodeI` in namespace `rigI` (I = 1..N) with
# `play --conductor CODE --name nodeI --audio null`, and writes each node's terminal to
# rig/nodeI.out, its --log to rig/nodeI.jsonl and what it plays to rig/nodeI.wav. This machine
# reaches the bridge too (10.241.0.254), so `ctl` runs from any terminal. Ctrl-C stops every
# process and deletes the namespaces.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-3}"
set_arg="${2:---demo}"
case "$n" in ''|*[!0-9]*) echo "usage: deploy/rig.sh N [SET.toml]" >&2; exit 2 ;; esac
if [ "$n" -lt 1 ] || [ "$n" -gt 32 ]; then echo "rig.sh: N must be 1 to 32" >&2; exit 2; fi
if [ "$set_arg" != "--demo" ] && [ ! -f "$set_arg" ]; then echo "rig.sh: no set file $set_arg" >&2; exit 2; fi
if [ "$(id -u)" -ne 0 ]; then echo "rig.sh: needs root (it creates network namespaces)" >&2; exit 2; fi

target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release --manifest-path "$root/Cargo.toml" -p loophole-node -p loophole-conductor >&2
node="$target/release/loophole-node"
conductor="$target/release/loophole-conductor"
out="$PWD/rig"
mkdir -p "$out"
state="$out/conductor-state"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in rigb rigc $(seq -f 'rig%g' 1 "$n"); do ip netns del "$ns" 2>/dev/null || true; done
  ip link del righost 2>/dev/null || true
  echo "rig: stopped; logs and captures are in $out" >&2
}
trap cleanup INT TERM EXIT

# The bridge, in a namespace of its own, and this machine's leg into it.
for ns in rigb rigc $(seq -f 'rig%g' 1 "$n"); do ip netns del "$ns" 2>/dev/null || true; done
ip link del righost 2>/dev/null || true
ip netns add rigb
ip -n rigb link add br0 type bridge
ip -n rigb link set br0 up
ip link add righost type veth peer name vhost netns rigb
ip -n rigb link set vhost master br0 up
ip addr add 10.241.0.254/24 dev righost
ip link set righost up
leg() { # namespace, address
  ip netns add "$1"
  ip -n rigb link add "v$1" type veth peer name eth0 netns "$1"
  ip -n rigb link set "v$1" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$1" link set lo up
}
leg rigc 10.241.0.1
for i in $(seq 1 "$n"); do leg "rig$i" "10.241.0.$((i + 1))"; done

# The conductor; its join code carries the address the nodes reach it at.
ip netns exec rigc "$conductor" serve "$set_arg" --listen 10.241.0.1:4460 --state "$state" \
  --log "$out/conductor.jsonl" >"$out/conductor.out" 2>&1 &
pids+=($!)
code=""
for _ in $(seq 1 100); do
  code="$(sed -n 's/^join code: //p' "$out/conductor.out" | head -1)"
  [ -n "$code" ] && break
  sleep 0.1
done
if [ -z "$code" ]; then echo "rig: the conductor did not start:" >&2; cat "$out/conductor.out" >&2; exit 1; fi

for i in $(seq 1 "$n"); do
  ip netns exec "rig$i" "$node" play --conductor "$code" --name "node$i" --audio null --no-ui \
    --log "$out/node$i.jsonl" --capture "$out/node$i.wav" >"$out/node$i.out" 2>&1 &
  pids+=($!)
done

cat <<EOF
rig: a conductor and $n nodes are playing (namespaces rigc, rig1..rig$n; output in $out).
join code: $code
Trigger from this machine, e.g.:
  $conductor ctl --join $code scene.trigger SCENE
  $conductor ctl --join $code status
Ctrl-C stops the rig.
EOF
wait
