#!/usr/bin/env bash
# A boot storm on the modelled array: 200 Windows 7 desktops booting at once as snapshot
# clones of the model's GIs, every IO through volumes, processors, cache and disks.
# Called by scripts/demo.sh with the output folder as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
CF=(".venv/bin/python" "-m" "clonefleet")
echo "== simulate: a boot storm of 200 Windows 7 desktops (12.4 million IOs), snapshot clones"
"${CF[@]}" simulate --fleet desktop-win7 --array midrange-2012 --vms 200 --method snapshot --plots "$OUT/simulate"
echo
echo "== simulate: the same storm on 1, 2, 3 and 5 GIs: what each GI replica buys"
"${CF[@]}" simulate --fleet desktop-win7 --array midrange-2012 --vms 200 --method snapshot --golden-images 1,2,3,5
