#!/usr/bin/env bash
# The main job on the embedded defaults: reproduce the paper, plan both paper fleets,
# then (when those parts are present) simulate a boot storm and provision real clones; last, write the
# report (out/report.html) and print its path.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
CF=(".venv/bin/python" "-m" "clonefleet")

echo "== 1. plan: the paper's Fig. 4 reproduced"
"${CF[@]}" reproduce paper --out "$OUT/paper"
echo
echo "== 2. plan: 1000 virtual servers (Windows Server 2008) on the paper's array"
"${CF[@]}" plan --fleet server-ws2008 --array midrange-2012 --vms 1000
echo
echo "== 3. plan: 1000 virtual desktops (Windows 7) on the paper's array"
"${CF[@]}" plan --fleet desktop-win7 --array midrange-2012 --vms 1000
echo
echo "== 4. sweep: how far each method goes on that array, and the disks 1000 desktops need"
"${CF[@]}" sweep --fleet desktop-win7 --array midrange-2012 --vms 1:5000 --target 1000 --out "$OUT/sweep"
if [ -x scripts/demo-simulate.sh ]; then
  echo
  scripts/demo-simulate.sh "$OUT"
fi
if [ -x scripts/demo-boot.sh ]; then
  echo
  scripts/demo-boot.sh "$OUT"
fi
if [ -x scripts/demo-provision.sh ]; then
  echo
  scripts/demo-provision.sh "$OUT"
fi
if [ "${RBD:-0}" = 1 ]; then  # make demo RBD=1: the same on a Ceph RBD development cluster
  echo
  scripts/demo-rbd.sh "$OUT"
fi
echo
echo "The paper's figure: $OUT/paper/fig4.png (also fig4.svg, fig4.json)"
echo
# Last, the report a person reads: from the stormed snapshot fleet when the provisioning part ran (its storm
# beside the model and the simulation), else from the presets; then the kept clones are destroyed.
REPORT="$OUT/report.html"
manifest="$OUT/provision/snapshot.toml"
if [ -f "$manifest" ] && [ -d "$OUT/provision/snapshot" ]; then
  echo "== report: 1 page for a person, from the stormed fleet $manifest"
  "${CF[@]}" report "$manifest" -o "$REPORT" --force
  "${CF[@]}" destroy "$manifest" --yes >/dev/null
else
  echo "== report: 1 page for a person, 1000 desktops (Windows 7) on the paper's array"
  "${CF[@]}" report --fleet desktop-win7 --array midrange-2012 --vms 1000 -o "$REPORT" --force
fi
echo "The report: $(realpath "$REPORT")"
