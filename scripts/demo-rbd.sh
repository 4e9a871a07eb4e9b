#!/usr/bin/env bash
# Real clones on Ceph RBD (make demo RBD=1): a single-node development cluster started for the demo
# and stopped after it (by the pids it recorded, also when a step fails), a small fleet of layered
# clones of the GI built here, the boot writes applied, the capacity measured beside the model's S
# (rbd-clone, 4 MiB objects), a boot storm on the clones, one clone flattened, the fleet destroyed. Called by scripts/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
DIR="$OUT/rbd"
CF=(".venv/bin/python" "-m" "clonefleet")
COUNT=${DEMO_CLONES:-20}
mkdir -p "$DIR"

echo "== rbd: a single-node Ceph cluster on loopback"
"${CF[@]}" dev-ceph start --dir "$DIR/dev-ceph"
trap '"${CF[@]}" dev-ceph stop --dir "$DIR/dev-ceph"' EXIT
GI="$OUT/provision/gi.qcow2"
if [ ! -f "$GI" ]; then
  "${CF[@]}" gi build --out "$OUT/provision" --name gi --size "128 MiB" --seed 1
fi
manifest="$DIR/fleet.toml"
"${CF[@]}" init --gi "$GI" --dest "$DIR/state" --count "$COUNT" --method snapshot --golden-images 2 \
  --backend rbd --rbd-conf "$DIR/dev-ceph/ceph.conf" --name demo-rbd --out "$manifest" --force
"${CF[@]}" provision "$manifest"
"${CF[@]}" status "$manifest" --verify
"${CF[@]}" writes "$manifest"
"${CF[@]}" capacity "$manifest"
echo "-- storm: the clones boot together on Ceph (qemu-storage-daemon's rbd driver, NBD, fio)"
"${CF[@]}" storm "$manifest" --ios-per-vm 1500
"${CF[@]}" flatten "$manifest" vm-0001
"${CF[@]}" destroy "$manifest" --yes
