"""Make a capture the shipped trace and fleet preset (a developer's tool; how debian-boot was made).

    .venv/bin/clonefleet gi build --os debian -o out/gi
    .venv/bin/clonefleet capture out/gi/debian.qcow2 -o out/capture
    .venv/bin/python scripts/ship_capture.py out/capture out/gi/debian.gi.json debian-boot

writes ``src/clonefleet/presets/traces/NAME.csv.gz`` (the trace, gzip without a time stamp),
``NAME.capture.json`` beside it (the capture's provenance, the GI's manifest: every package
version) and ``src/clonefleet/presets/fleets/NAME.toml`` (the fleet derived from the trace, with
the GI's real size and used data).
"""

from __future__ import annotations

import gzip
import json
import sys
from datetime import date
from pathlib import Path

from clonefleet.guest.capture import capture_note
from clonefleet.presets.derive import derive_fleet, trace_sha256
from clonefleet.sim.traceio import read_trace

ROOT = Path(__file__).resolve().parent.parent / "src" / "clonefleet" / "presets"


def main(capture: Path, gi_manifest: Path, name: str) -> None:
    traces = ROOT / "traces"
    traces.mkdir(exist_ok=True)
    shipped = traces / f"{name}.csv.gz"
    with open(capture / "boot.csv", "rb") as src, open(shipped, "wb") as raw, \
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as dst:
        dst.write(src.read())
    doc = json.loads((capture / "capture.json").read_text(encoding="utf-8"))
    gi = json.loads(gi_manifest.read_text(encoding="utf-8"))
    sha = trace_sha256(shipped)
    for key in ("folder", "trace", "provenance"):
        doc.pop(key, None)
    doc["gi"]["path"] = f"{gi['images']['qcow2']['file']} from clonefleet gi build --os debian"
    doc["files"][shipped.name] = sha
    doc["gi_manifest"] = gi
    provenance = traces / f"{name}.capture.json"
    provenance.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    derived = derive_fleet(read_trace(shipped), name=name, source_label=f"presets/traces/{shipped.name}",
                           sha256=sha, gi_virtual_bytes=float(gi["image_bytes"]),
                           gi_used_bytes=float(gi["used_bytes"]), date=date.today().isoformat(),
                           rate_note=capture_note(shipped, sha),
                           gi_source=f"the GI's manifest (clonefleet gi build --os debian), in {provenance.name}")
    toml = derived.toml.replace(
        "[preset]",
        f"# Captured by clonefleet capture: a minimal Debian {gi['suite']} (kernel {gi['kernel_version']}) "
        f"booted\n# to power-off; provenance in presets/traces/{provenance.name}.\n[preset]", 1)
    toml = toml.replace(f'description = "derived from the boot trace presets/traces/{shipped.name} (1 VMs)"',
                        f'description = "a minimal Debian {gi["suite"]} boot, captured (QEMU block trace)"')
    (ROOT / "fleets" / f"{name}.toml").write_text(toml, encoding="utf-8")
    print(f"wrote {shipped}, {provenance}, {ROOT / 'fleets' / f'{name}.toml'}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: ship_capture.py CAPTURE_FOLDER GI_MANIFEST NAME")
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
