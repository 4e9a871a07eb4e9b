"""Commands of fleets on Ceph RBD: clonefleet flatten, clonefleet dev-ceph; and how provision, status,
writes, capacity and destroy print an RBD fleet (provision_cmds hands an rbd manifest over here)."""

from __future__ import annotations

from pathlib import Path

import typer

from clonefleet.cli.app import JSON_OPTION, Whole, app, console, emit_json, progress_display
from clonefleet.errors import UsageError
from clonefleet.provision.manifest import MAX_WORKERS, Manifest

DEV_CEPH_DIR = "out/dev-ceph"

dev_ceph = typer.Typer(help="A single-node Ceph cluster on loopback for development and tests (mon, mgr, "
                            "one BlueStore OSD on a file).", no_args_is_help=True)
app.add_typer(dev_ceph, name="dev-ceph")
DIR_OPTION = typer.Option(DEV_CEPH_DIR, "--dir", help="The cluster's folder: ceph.conf, data, logs, daemon pids.")


@dev_ceph.command("start")
def dev_ceph_start(directory: Path = DIR_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Create (first time) and start the cluster; prints the ceph.conf to put in a manifest's [rbd] table."""
    from clonefleet.storage import devceph

    st = devceph.start(directory)
    if as_json:
        emit_json(st.to_dict())
        return
    console.print(f"dev-ceph running: {', '.join(f'{d.name} (pid {d.pid})' for d in st.daemons)}; "
                  f"conf {st.conf}, pool {devceph.DEFAULT_POOL}", markup=False)


@dev_ceph.command("stop")
def dev_ceph_stop(directory: Path = DIR_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Stop exactly the daemons 'dev-ceph start' started (by their recorded pids); the data stays."""
    from clonefleet.storage import devceph

    stopped = devceph.stop(directory)
    if as_json:
        emit_json({"stopped": stopped})
        return
    console.print(f"dev-ceph stopped: {', '.join(stopped) or 'nothing was running'}", markup=False)


@dev_ceph.command("status")
def dev_ceph_status(directory: Path = DIR_OPTION, as_json: bool = JSON_OPTION) -> None:
    """The cluster's daemons and whether each runs; exit 1 when not all run."""
    from clonefleet.storage import devceph

    st = devceph.status(directory)
    if as_json:
        emit_json(st.to_dict())
    else:
        console.print(f"dev-ceph {'running' if st.running else 'not running'} in {st.directory}", markup=False)
        for d in st.daemons:
            console.print(f"  {d.name}: pid {d.pid} {'running' if d.running else 'gone'}", markup=False)
    if not st.running:
        raise typer.Exit(1)


@app.command("flatten")
def flatten_cmd(
    manifest: str = typer.Argument(..., help="The fleet manifest (TOML) of an rbd fleet.", show_default=False),
    vms: list[str] = typer.Argument(None, help="Clone names (vm-0001 ...); all when none.", show_default=False),
    workers: int = typer.Option(None, "--workers", "-w", click_type=Whole(1, MAX_WORKERS, "N"),
                                help="Parallel workers (default: the manifest's)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Copy the GI's data into clones so they no longer depend on the GI snapshot (rbd flatten)."""
    from clonefleet.provision import load_manifest, rbdfleet

    m = load_manifest(manifest)
    if m.rbd is None:
        raise UsageError(f"flatten: fleet {m.name} is on backend {m.backend}; flatten works on backend rbd "
                         "(a qcow2 clone is flattened by 'qemu-img convert')")
    with progress_display(not as_json) as report:
        result = rbdfleet.flatten(m, vms or (), workers=workers, progress=report)
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"fleet {m.name}: flattened {len(result.flattened)} clones, {result.already} already "
                  "independent of the GI snapshot", markup=False)


# --- the file commands, for an rbd manifest ------------------------------------------------------

def provision(m: Manifest, workers: int | None, dry_run: bool, as_json: bool) -> None:
    from clonefleet.provision import rbdfleet

    if dry_run:
        config = rbdfleet.config_of(m)
        sources = rbdfleet.sources_of(m)
        source_specs = [f"{s.pool}/{s.image}@clonefleet-gi" for s in sources]
        plan = {"manifest": str(m.path), "backend": "rbd", "method": m.method.value, "clones": m.count,
                "pool": config.pool, "sources": source_specs,
                "images": f"{m.name}.{m.clone_name.name(1)} .. {m.name}.{m.clone_name.name(m.count)}"}
        if as_json:
            emit_json(plan)
        else:
            console.print(f"plan for fleet {m.name} (rbd, {m.method}, g = {len(sources)}): {m.count} images "
                          f"{plan['images']} in pool {config.pool} from {', '.join(source_specs)}", markup=False)
        return
    with progress_display(not as_json) as report:
        result = rbdfleet.provision(m, progress=report, workers=workers)
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"fleet {m.name}: {result.clones} {result.method} clones in pool {m.rbd.pool if m.rbd else '?'} "
                  f"({result.created} created, {result.adopted} adopted, {result.remade} half-made remade, "
                  f"{result.removed} removed) from {result.golden_images} GI image(s) in {result.elapsed_s:.2f} s",
                  markup=False)


def status(m: Manifest, verify: bool, show_clones: bool, as_json: bool) -> bool:
    from clonefleet.provision import rbdfleet

    st = rbdfleet.status(m, verify=verify)
    if as_json:
        emit_json(st.to_dict())
        return st.in_sync
    console.print(f"fleet {m.name} (rbd, {m.method}): {st.ok} of {st.wanted} clones ok, {len(st.missing)} missing, "
                  f"{len(st.damaged)} damaged, {len(st.foreign)} not clonefleet's, {len(st.unwanted)} no longer "
                  f"wanted; boot writes in {st.written}, flattened {st.flattened}", markup=False)
    console.print(f"golden image: {'ok' if st.gi_ok else 'NOT OK'}: {st.gi_detail}", markup=False)
    shown = st.missing if show_clones else st.missing[:5]
    for name in shown:
        console.print(f"  {name}: missing", markup=False)
    for name, why in st.damaged:
        console.print(f"  {name}: damaged: {why}", markup=False)
    for name in st.foreign:
        console.print(f"  {name}: an image clonefleet did not make", markup=False)
    return st.in_sync


def destroy(m: Manifest, as_json: bool) -> None:
    from clonefleet.provision import rbdfleet

    with progress_display(not as_json) as report:
        result = rbdfleet.destroy(m, progress=report)
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(f"fleet {m.name}: removed {result.removed} clones, {result.replicas_removed} GI replicas; the GI "
                  "snapshot unprotected and removed; the GI image kept", markup=False)
    for kept in result.kept:
        console.print(f"  kept (not made by clonefleet, or still in use): {kept}", markup=False)


