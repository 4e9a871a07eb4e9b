#!/usr/bin/env bash
# A real operating system's boot: the shipped capture of a Debian boot planned and replayed by
# 1000 VMs; then (unless CAPTURE=0) a Debian GI built from Debian's packages and one of its boots
# captured live under QEMU, its preset derived. Called by scripts/demo.sh with the output folder as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
CF=(".venv/bin/python" "-m" "clonefleet")
echo "== real boot: the shipped capture of a Debian boot (trace debian-boot), its preset and where it came from"
"${CF[@]}" presets show debian-boot
echo
echo "== real boot: 1000 VMs of it on the paper's array"
"${CF[@]}" plan --fleet debian-boot --array midrange-2012 --vms 1000
echo
echo "== real boot: 1000 VMs each replaying the captured boot, powered on within 20 s, snapshot clones"
"${CF[@]}" simulate --fleet debian-boot --trace debian-boot --array midrange-2012 --vms 1000 --method snapshot \
  --start-spread 20 --plots "$OUT/real-boot"
if [ "${CAPTURE:-1}" = "0" ]; then
  echo "(CAPTURE=0: the live capture is skipped)"
  exit 0
fi
echo
echo "== real boot, live: a bootable Debian GI from Debian's packages (built once, then cached)"
rm -rf "$OUT/debian-gi" "$OUT/capture"
"${CF[@]}" gi build --os debian --out "$OUT/debian-gi"
echo
echo "== real boot, live: boot a linked clone of it under QEMU and record every block IO"
"${CF[@]}" capture "$OUT/debian-gi/debian.qcow2" --out "$OUT/capture"
echo
echo "== real boot, live: the fleet preset derived from that capture"
"${CF[@]}" presets derive "$OUT/capture/boot.csv" -o "$OUT/capture/my-debian.toml" --force \
  --gi-size 1GiB --gi-used "$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["used_bytes"])' \
  "$OUT/debian-gi/debian.gi.json")" >/dev/null
"${CF[@]}" plan --fleet "$OUT/capture/my-debian.toml" --array midrange-2012 --vms 1000 | sed -n '1,10p'
