#!/usr/bin/env bash
# Real clones on the default backend (qcow2 files, qemu-img): a small fleet from the GI built
# here, once per method (full, thin, snapshot), the boot writes applied, then the capacity
# measured beside the model's S; then a fleet's life (5 days of use, measured, refreshed) (and, on the snapshot clones, a real boot storm; those clones are kept for
# the report that scripts/demo.sh writes last, and destroyed by it).
# Called by scripts/demo.sh with the output folder as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out}
DIR="$OUT/provision"
CF=(".venv/bin/python" "-m" "clonefleet")
COUNT=${DEMO_CLONES:-20}
mkdir -p "$DIR"

echo "== provision: $COUNT clones of a real golden image by each method (backend qcow2)"
GI="$DIR/gi.qcow2"
if [ ! -f "$GI" ]; then
  "${CF[@]}" gi build --out "$DIR" --name gi --size "128 MiB" --seed 1
fi
for method in full thin snapshot; do
  manifest="$DIR/$method.toml"
  g=1
  [ "$method" = snapshot ] && g=2
  echo
  echo "-- method $method (g = $g)"
  "${CF[@]}" init --gi "$GI" --dest "$DIR/$method" --count "$COUNT" --method "$method" \
    --golden-images "$g" --name "demo-$method" --out "$manifest" --force
  "${CF[@]}" provision "$manifest"
  "${CF[@]}" status "$manifest" --verify >/dev/null && echo "status: every clone passes qemu-img check"
  "${CF[@]}" writes "$manifest"
  "${CF[@]}" capacity "$manifest"
  "${CF[@]}" capacity "$manifest" --json >"$DIR/$method-capacity.json"
  if [ "$method" = snapshot ]; then
    echo "-- storm: the $COUNT snapshot clones boot together on their storage (qemu-storage-daemon + fio)"
    "${CF[@]}" storm "$manifest" --start-spread 1 --out "$DIR"
    # kept for the report (scripts/demo.sh writes it from this manifest, then destroys the clones)
    echo "kept: the snapshot clones, for the report; scripts/demo.sh destroys them after it"
  else
    "${CF[@]}" destroy "$manifest" --yes
  fi
done
echo
echo "== measured vs modelled capacity per method ($COUNT clones, boot writes applied)"
.venv/bin/python - "$DIR" <<'PY'
import json, sys
from pathlib import Path
from clonefleet.units import format_bytes
d = Path(sys.argv[1])
print(f"{'method':<9} {'measured S':>11} {'model S':>11} {'ratio':>6} {'per clone':>10} {'model':>10} "
      f"{'fresh clone':>11}")
for method in ("full", "thin", "snapshot"):
    r = json.loads((d / f"{method}-capacity.json").read_text())
    fresh = r["measured_fresh_clone_bytes"]
    print(f"{method:<9} {format_bytes(r['measured_total_bytes']):>11} {format_bytes(r['model_total_bytes']):>11} "
          f"{r['total_ratio']:>6.3f} {format_bytes(r['measured_per_clone_bytes']):>10} "
          f"{format_bytes(r['model_per_clone_bytes']):>10} {format_bytes(fresh) if fresh else '-':>11}")
print(r["note"])
PY
echo "capacity reports: $DIR/{full,thin,snapshot}-capacity.json"

echo
echo "== a fleet's life: $COUNT linked clones of Linux desktops, 5 days of use (the desktop-linux preset's daily"
echo "   writes and pagefile, scaled to the GI), measured beside the growth model (Eq. G1/G2), then refreshed"
manifest="$DIR/life.toml"
"${CF[@]}" init --gi "$GI" --dest "$DIR/life" --count "$COUNT" --method snapshot --preset desktop-linux \
  --name demo-life --out "$manifest" --force
"${CF[@]}" provision "$manifest"
"${CF[@]}" writes "$manifest" --days 5
"${CF[@]}" capacity "$manifest"
"${CF[@]}" refresh "$manifest" --yes
"${CF[@]}" capacity "$manifest" --json >"$DIR/life-refreshed-capacity.json"
.venv/bin/python - "$DIR/life-refreshed-capacity.json" <<'PY'
import json, sys
from clonefleet.units import format_bytes
r = json.loads(open(sys.argv[1]).read())
print(f"after the refresh: {format_bytes(r['measured_per_clone_bytes'])} per clone measured, "
      f"{format_bytes(r['model_per_clone_bytes'])} modelled (fresh clones, {r['age_days_max']} days of use)")
PY
"${CF[@]}" destroy "$manifest" --yes
