"""Commands of real provisioning (clonefleet init, provision, status, writes, capacity, refresh, destroy)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from clonefleet.cli import rbd_cmds
from clonefleet.cli.app import (
    JSON_OPTION,
    Col,
    Whole,
    app,
    console,
    emit_json,
    err_console,
    parse_whole,
    print_table,
    progress_display,
)
from clonefleet.errors import UsageError
from clonefleet.lifetime import MAX_DAYS
from clonefleet.provision.manifest import MAX_CLONES, MAX_GOLDEN_IMAGES, MAX_WORKERS
from clonefleet.units import UnitError, format_bytes, parse_bytes

MANIFEST_ARG = typer.Argument(..., help="The fleet manifest (TOML); write one with 'clonefleet init'.",
                              show_default=False)
WORKERS_OPTION = typer.Option(None, "--workers", "-w", click_type=Whole(1, MAX_WORKERS, "N"),
                              help="Parallel workers (default: the manifest's).")


@app.command("init")
def init_cmd(
    gi_text: str = typer.Option(..., "--gi", help="The golden image (qcow2 or raw); its SHA-256 is recorded.",
                            show_default=False),
    dest_text: str = typer.Option(..., "--dest", help="The fleet directory (created on provision).",
                              show_default=False),
    count: int = typer.Option(..., "--count", "-n", click_type=Whole(1, MAX_CLONES, "N"), help="Number of clones.",
                              show_default=False),
    method: str = typer.Option("snapshot", "--method", "-m", help="full, thin or snapshot."),
    backend: str = typer.Option("qcow2", "--backend", "-b", help="qcow2 (default), reflink or rbd."),
    golden_images: str = typer.Option("1", "--golden-images", "-g",
                                      help="GI replicas g for snapshot clones, or 'auto' (the planner's g)."),
    clone_name: str = typer.Option("vm-{index:04d}", "--clone-name", help="Clone name template with {index}."),
    name: str = typer.Option(None, "--name", help="Fleet name (default: the manifest file's name)."),
    preset: str = typer.Option(None, "--preset", show_default=False,
                               help="Fleet preset or TOML path: boot writes, and g = auto [default: server-linux]."),
    array: str = typer.Option(None, "--array", show_default=False,
                              help="Array preset or TOML path describing your storage, for g = auto "
                                   "[default: midrange-2012]; 'clonefleet presets' lists them."),
    workers: int = typer.Option(4, "--workers", "-w", click_type=Whole(1, MAX_WORKERS, "N"), help="Parallel workers."),
    cluster_size: str = typer.Option("64 KiB", "--cluster-size", help="qcow2 cluster size."),
    max_chain_depth: int = typer.Option(1, "--max-chain-depth", click_type=Whole(1, 64, "N"),
                                        help="Longest backing chain the GI itself may have (1: none)."),
    write_bytes: str = typer.Option(None, "--write-bytes", help="Override W, bytes one boot writes."),
    write_extents: int | None = typer.Option(None, "--write-extents", click_type=Whole(0, 10**7, "N"),
                                             help="Override n, extents one boot writes."),
    write_span: str = typer.Option(None, "--write-span", help="Override R, the span the writes fall in."),
    seed: int = typer.Option(1, "--seed", click_type=Whole(0, 2**63 - 1, "SEED"),
                             help="Seed of the boot write footprints."),
    out_text: str = typer.Option("fleet.toml", "--out", "-o", help="Manifest file to write."),
    force: bool = typer.Option(False, "--force", help="Replace an existing manifest."),
    rbd_conf: str = typer.Option(None, "--rbd-conf", help="Backend rbd: the cluster's ceph.conf.",
                                 show_default=False),
    rbd_pool: str = typer.Option("rbd", "--rbd-pool", help="Backend rbd: the pool of the images."),
    rbd_client: str = typer.Option("client.admin", "--rbd-client", help="Backend rbd: the Ceph client name."),
    rbd_keyring: str = typer.Option(None, "--rbd-keyring", help="Backend rbd: the client's keyring.",
                                    show_default=False),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a fleet manifest from flags (the GI's checksum recorded), so no TOML is written by hand."""
    from clonefleet.provision import explain_golden_images, write_manifest
    from clonefleet.storage.goldimage import check_golden_image

    defaulted = {"--preset": preset is None, "--array": array is None}
    preset = preset if preset is not None else "server-linux"
    array = array if array is not None else "midrange-2012"

    for label, text in (("--gi", gi_text), ("--dest", dest_text), ("--out", out_text)):
        if "\x00" in text:
            raise UsageError(f"{label} {text!r}: a path with a NUL byte")
    gi, dest, out = Path(gi_text), Path(dest_text), Path(out_text)
    info = check_golden_image(gi.absolute(), None, max_chain_depth, not_same_as=out.absolute())
    base = out.absolute().parent

    def rel(p: Path) -> str:
        a = p.absolute()
        try:
            return str(a.relative_to(base))
        except ValueError:
            return str(a)

    for label, text in (("--write-bytes", write_bytes), ("--write-span", write_span),
                        ("--cluster-size", cluster_size)):
        if text is not None:
            try:
                parse_bytes(text)
            except UnitError as exc:
                raise UsageError(f"{label} = {text!r}: {exc}") from None
    manifest = write_manifest(out, {
        "fleet": {"name": name or out.stem, "count": count, "clone_name": clone_name, "dest": rel(dest),
                  "preset": preset, "array": array},
        "golden_image": {"path": rel(gi), "sha256": info.sha256, "bytes": info.file_bytes,
                         "max_chain_depth": max_chain_depth},
        "clones": {"backend": backend, "method": method,
                   "golden_images": golden_images if golden_images == "auto" else
                   parse_whole(golden_images, "--golden-images", 1, MAX_GOLDEN_IMAGES),
                   "cluster_size": cluster_size, "workers": workers},
        "writes": {"source": "preset", "seed": seed, "bytes": write_bytes, "extents": write_extents,
                   "span": write_span},
        "rbd": {"conf": rel(Path(rbd_conf)) if rbd_conf else None, "pool": rbd_pool, "client": rbd_client,
                "keyring": rel(Path(rbd_keyring)) if rbd_keyring else None}
        if backend == "rbd" else {},
    }, force=force)
    choice = explain_golden_images(manifest)
    if as_json:
        emit_json({"manifest": str(out), **manifest.to_dict(),
                   "golden_images_choice": {**choice.to_dict(), "fleet_preset_defaulted": defaulted["--preset"],
                                            "array_preset_defaulted": defaulted["--array"]}})
        return
    console.print(f"wrote {out}: {count} {method} clones of {gi} on {backend} in {manifest.dest}", markup=False)
    if choice.requested != "auto":
        return
    shown = "no number of GIs" if choice.golden_images is None else f"g = {choice.golden_images}"
    console.print(f"golden images: {shown} (auto): {choice.reason}", markup=False)
    console.print(f"presets used: fleet {choice.fleet_preset}{' (the default)' if defaulted['--preset'] else ''}, "
                  f"array {choice.array_preset}{' (the default)' if defaulted['--array'] else ''}: "
                  f"{choice.array_description}", markup=False)
    if choice.storage_warning:
        err_console.print(f"clonefleet: warning: {choice.storage_warning}", markup=False)


@app.command("provision")
def provision_cmd(
    manifest: str = MANIFEST_ARG,
    workers: int = WORKERS_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing."),
    force: bool = typer.Option(False, "--force",
                               help="Start even when the plan needs more space than is free (a warning then)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Make the fleet the manifest describes; idempotent: a rerun after any interruption finishes the job."""
    from clonefleet import provision

    m = provision.load_manifest(manifest)
    if m.rbd is not None:
        rbd_cmds.provision(m, workers, dry_run, as_json)
        return
    if dry_run:
        plan = provision.make_plan(m)
        if as_json:
            emit_json(plan.to_dict())
            return
        console.print(f"plan for {m.dest} ({plan.backend.name}, {plan.recipe.method}, g = {plan.golden_images}): "
                      f"{len(plan.create)} to create, {len(plan.adopt)} to adopt, {len(plan.remove)} to remove, "
                      f"{plan.present} present; about {format_bytes(plan.estimated_bytes)} needed, "
                      f"{format_bytes(plan.free_bytes)} free")
        for step in plan.recipe.steps:
            console.print(f"  {step}")
        return
    with progress_display(not as_json) as report:
        result = provision.provision(m, progress=report, workers=workers,
                                     force=force)
    for warning in result.warnings:
        err_console.print(f"clonefleet: warning: {warning}", markup=False)
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"{m.dest}: {len(result.plan.tasks)} {result.plan.recipe.method} clones "
                  f"({result.created} created, {result.adopted} adopted, {result.plan.present} already there, "
                  f"{result.removed} removed, {result.temporaries_removed} leftovers cleaned) "
                  f"from {result.plan.golden_images} GI(s) in {result.elapsed_s:.2f} s", markup=False)


@app.command("status")
def status_cmd(
    manifest: str = MANIFEST_ARG,
    verify: bool = typer.Option(False, "--verify", help="Check every clone deeply (qemu-img check)."),
    show_clones: bool = typer.Option(False, "--clones", help="List every clone."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Desired (the manifest) against actual (journal and disk); exit 1 when they differ."""
    from clonefleet import provision

    m = provision.load_manifest(manifest)
    if m.rbd is not None:
        if not rbd_cmds.status(m, verify, show_clones, as_json):
            raise typer.Exit(1)
        return
    with progress_display(verify and not as_json) as report:
        st = provision.status(m, verify=verify, progress=report)
    if as_json:
        emit_json(st.to_dict())
    else:
        counts = (("wanted", st.wanted), ("ok", st.count("ok")), ("missing", st.count("missing")),
                  ("failed", st.count("failed")), ("damaged", st.count("damaged")),
                  ("boot writes applied", st.written), ("days of use, oldest clone", st.age_days_max),
                  ("no longer wanted", len(st.unwanted)),
                  ("leftover temporaries", len(st.temporaries)), ("unknown files", len(st.unknown)))
        print_table(escape(f"fleet {m.name}: {m.dest} ({st.backend}, {st.method}, g = {st.golden_images})"),
                    [Col("what"), Col("count", right=True)], [[label, str(value)] for label, value in counts])
        console.print(f"golden image: {'ok' if st.gi_ok else 'NOT OK'}: {st.gi_detail}", markup=False)
        if st.locked_by:
            console.print(f"locked by {st.locked_by}", markup=False)
        for c in st.clones:
            if show_clones or c.state != "ok":
                console.print(f"  {c.name}: {c.state}{': ' + c.detail if c.detail else ''}", markup=False)
        if verify:
            console.print(f"verified {st.verified} of {st.wanted} clones in depth ({st.backend} check) and "
                          f"{st.golden_images - 1} GI replica(s) against the GI's SHA-256", markup=False)
        console.print(st.advice, markup=False)
    if not st.in_sync:
        raise typer.Exit(1)


@app.command("destroy")
def destroy_cmd(
    manifest: str = MANIFEST_ARG,
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm: remove the fleet's clones."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove the fleet's clones and GI replicas; never the GI, never a file outside the fleet directory."""
    from clonefleet import provision

    m = provision.load_manifest(manifest)
    if not yes:
        raise UsageError(f"destroy removes the clones of fleet {m.name} in {m.dest}: pass --yes to confirm")
    if m.rbd is not None:
        rbd_cmds.destroy(m, as_json)
        return
    with progress_display(not as_json) as report:
        result = provision.destroy(m, progress=report)
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"{m.dest}: removed {result.removed} clones, {result.replicas_removed} GI replicas, "
                  f"{result.temporaries_removed} leftovers", markup=False)
    for kept in result.kept:
        console.print(f"  kept (not made by clonefleet, or still in use): {kept}", markup=False)


@app.command("writes")
def writes_cmd(
    manifest: str = MANIFEST_ARG,
    workers: int = WORKERS_OPTION,
    days: int | None = typer.Option(None, "--days", click_type=Whole(0, MAX_DAYS, "DAYS"), show_default=False,
                                    help="Then bring every clone to this age: the fleet preset's daily writes "
                                         "(scaled to the GI) of each missing day; older clones are left alone."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write each clone's boot write footprint into it (qemu-io or pwrite), and with --days N the daily writes
    of N days of use; reruns skip what is written."""
    from clonefleet import provision
    from clonefleet.provision import bootwrites, rbdfleet

    m = provision.load_manifest(manifest)
    result: bootwrites.WritesResult | rbdfleet.RbdWritesResult
    if m.rbd is not None and days is not None:
        raise UsageError(f"--days {days}: not supported on backend rbd yet; daily writes go into qcow2 and reflink "
                         "clones")
    with progress_display(not as_json) as report:
        if m.rbd is not None:  # images in a Ceph pool: the RBD fleet engine
            result = rbdfleet.apply_writes(m, workers=workers, progress=report)
        else:
            result = provision.apply_writes(m, progress=report, workers=workers, days=days)
    if as_json:
        emit_json(result.to_dict())
        return
    where = f"fleet {m.name}" if m.rbd is not None else str(m.dest)
    console.print(f"{where}: boot writes applied to {result.written_now} clones "
                  f"({format_bytes(result.bytes_written)}), {result.already} already had them", markup=False)
    if isinstance(result, bootwrites.WritesResult) and result.days is not None:
        ages = sorted(set(result.ages_days))
        shown = f"{ages[0]}" if len(ages) == 1 else f"{ages[0]} to {ages[-1]}"
        console.print(f"daily writes: {result.clone_days_written} clone-days applied now "
                      f"({format_bytes(result.daily_bytes_written)}) to bring every clone to {result.days} days; "
                      f"clone ages now {shown} days", markup=False)
    console.print(result.note, markup=False)


@app.command("refresh")
def refresh_cmd(
    manifest: str = MANIFEST_ARG,
    clones: list[str] | None = typer.Option(None, "--clones", show_default=False,
                                            help="Refresh only this clone (repeat the flag for more)."),
    older_than: int | None = typer.Option(None, "--older-than", click_type=Whole(0, MAX_DAYS, "DAYS"),
                                          show_default=False,
                                          help="Refresh only clones holding more than DAYS days of daily writes."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm: every change in the refreshed clones is lost."),
    workers: int = WORKERS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Reset clones to their GI: each made anew (boot writes and days gone); crash-safe: a kill leaves each
    clone old or fresh, and a rerun starts the refresh over."""
    from clonefleet import provision

    m = provision.load_manifest(manifest)
    if m.rbd is not None:
        raise UsageError("refresh: not supported on backend rbd yet; 'clonefleet destroy' then 'clonefleet "
                         "provision' makes every clone anew")
    if not yes:
        raise UsageError(f"refresh makes clones of fleet {m.name} in {m.dest} anew, losing what was written into "
                         "them: pass --yes to confirm")
    with progress_display(not as_json) as report:
        result = provision.refresh(m, progress=report, workers=workers, clones=clones or (),
                                   older_than_days=older_than)
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"{m.dest}: {len(result.refreshed)} of {result.clones} clones refreshed (made anew from the GI), "
                  f"{result.adopted} finished from a stopped run, {result.temporaries_removed} leftovers cleaned "
                  f"in {result.elapsed_s:.2f} s", markup=False)


@app.command("capacity")
def capacity_cmd(
    manifest: str = MANIFEST_ARG,
    as_json: bool = JSON_OPTION,
) -> None:
    """Capacity the fleet really consumes beside the model's S (same method and granularity)."""
    from clonefleet import provision

    m = provision.load_manifest(manifest)
    if m.rbd is not None:  # images in a cluster: measured by provision.rbdfleet
        from clonefleet.provision import rbdfleet

        report = rbdfleet.capacity(m)
    else:
        report = provision.capacity(m)
    if as_json:
        emit_json(report.to_dict())
        return
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.3f}" if b else "-"

    rows = [["GIs (D)", format_bytes(report.measured_gi_bytes), format_bytes(report.model_gi_bytes),
             ratio(report.measured_gi_bytes, report.model_gi_bytes)],
            ["per clone (mean)", format_bytes(report.measured_per_clone_bytes),
             format_bytes(report.model_per_clone_bytes), f"{report.per_clone_ratio:.3f}"],
            ["per clone (min / max)", f"{format_bytes(report.measured_per_clone_min_bytes)} / "
             f"{format_bytes(report.measured_per_clone_max_bytes)}", "", ""]]
    if report.measured_fresh_clone_bytes is not None:
        rows.append(["per-clone overhead (fresh clone)", format_bytes(report.measured_fresh_clone_bytes),
                     format_bytes(report.model_overhead_bytes),
                     ratio(report.measured_fresh_clone_bytes, report.model_overhead_bytes)])
    if report.method == "snapshot":
        rows.append(["per-clone metadata after the writes", format_bytes(report.measured_metadata_per_clone_bytes),
                     format_bytes(report.model_metadata_bytes),
                     ratio(report.measured_metadata_per_clone_bytes, report.model_metadata_bytes)])
    rows.append(["total (S)", format_bytes(report.measured_total_bytes), format_bytes(report.model_total_bytes),
                 f"{report.total_ratio:.3f}"])
    lo, hi = report.age_days_min, report.age_days_max
    age = f"{lo}" if lo == hi else f"{lo} to {hi}"
    print_table(escape(f"fleet {m.name}: {report.clones} {report.method} clones on {report.backend}, aged {age} "
                       f"days (model: {report.function}, unit {format_bytes(report.unit_bytes)})"),
                [Col("figure", wrap=True), Col("measured", right=True), Col("model", right=True),
                 Col("measured / model", "ratio", right=True)], rows)
    console.print(f"measured: {report.accounting}", markup=False)
    console.print(report.note, markup=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
