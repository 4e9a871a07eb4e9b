"""Ceph RBD images through the Python bindings ``rados`` and ``rbd`` (Debian's python3-rados, python3-rbd).

- ``snapshot``: a layering clone (clone format 2) of a protected snapshot of the GI image;
- ``thin``: a sparse full copy of that snapshot (``Image.copy``: holes and zero blocks not written);
- ``full``: a thick-provisioned copy (the whole size written with zeros, ``write_zeroes`` with the
  thick-provision flag, then the GI's data extents copied over them).

The GI is imported from a qcow2 or raw file with ``qemu-img convert -O raw ... rbd:POOL/NAME``
(the rbd block driver of qemu-block-extra), which writes only the data, never the holes; GI
replicas are copies of the GI's snapshot, each with its own protected snapshot, in the same pool
or in pools of their own.

The bindings are imported here only, when a cluster is first connected to, and can be given
instead (``modules``: tests pass fakes). Every cluster operation has a bound: the monitor must
answer within ``connect_timeout_s``, every OSD operation within ``op_timeout_s``
(``rados_osd_op_timeout``, ``rados_mon_op_timeout``, ``client_mount_timeout``), so a stopped OSD
fails a run with one line instead of hanging it. Nothing here is tied to a local cluster: the
configuration is a ``ceph.conf`` path, a client name, an optional keyring and a pool.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from clonefleet.backends.base import BackendUnavailable
from clonefleet.errors import ClonefleetError, FieldError, UsageError
from clonefleet.presets import FunctionPreset, Method, load_function
from clonefleet.storage.tools import run_tool

#: The snapshot of a GI (or replica) image that clones are made from.
GI_SNAPSHOT = "clonefleet-gi"
COPY_CHUNK_BYTES = 4 << 20
#: Longest a dead client's watch can outlive it: Ceph's osd_client_watch_timeout (30 s) and a margin.
STALE_WATCH_S = 45.0
#: A blocklisted watcher still listed after this long was never armed by the OSD (Cluster.clear_watchers).
UNARMED_WATCH_S = 3.0
BINDINGS_HINT = ("the Python bindings rados and rbd: apt-get install --no-install-recommends python3-rados "
                 "python3-rbd, then 'make setup' (it makes them importable in the project's venv)")


class RbdError(ClonefleetError):
    """A cluster operation failed (a timeout, an OSD down, an image in the way)."""

    exit_code = 1


@dataclass(frozen=True)
class RbdConfig:
    """How to reach a cluster and where the fleet's images go."""

    conf: Path
    pool: str = "rbd"
    client: str = "client.admin"
    keyring: Path | None = None
    replica_pools: tuple[str, ...] = ()  # GI replica i goes to replica_pools[(i - 1) % len] (default: pool)
    connect_timeout_s: float = 5.0
    op_timeout_s: float = 10.0
    max_clone_depth: int = 5  # a clone's ancestors and itself: the GI image alone is 1, its clone 2

    def to_dict(self) -> dict[str, object]:
        return {"conf": str(self.conf), "pool": self.pool, "client": self.client,
                "keyring": None if self.keyring is None else str(self.keyring),
                "replica_pools": list(self.replica_pools), "connect_timeout_s": self.connect_timeout_s,
                "op_timeout_s": self.op_timeout_s, "max_clone_depth": self.max_clone_depth}

    def replica_pool(self, replica: int) -> str:
        if replica == 0 or not self.replica_pools:
            return self.pool
        return self.replica_pools[(replica - 1) % len(self.replica_pools)]

    @property
    def client_id(self) -> str:
        """The client's id, without its type: ``admin`` for ``client.admin``."""
        return self.client.removeprefix("client.")

    def qemu_target(self, pool: str, image: str) -> str:
        """The image as qemu's rbd driver names it."""
        spec = f"rbd:{pool}/{image}:conf={self.conf}:id={self.client_id}"
        if self.keyring is not None:
            spec += f":keyring={self.keyring}"
        return spec


#: Keys of a manifest's [rbd] table.
RBD_KEYS = ("conf", "pool", "client", "keyring", "replica_pools", "op_timeout", "connect_timeout",
            "max_clone_depth")
_POOL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _pool_name(where: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not _POOL.match(value):
        raise FieldError(where, key, value, "a Ceph pool name: letters, digits, '_', '.', '-' (at most 128)")
    return value


def rbd_config_from(table: Mapping[str, Any], base: Path, where: str) -> RbdConfig:
    """The [rbd] table of a manifest, validated; paths relative to ``base`` (the manifest's folder)."""
    def path(key: str) -> Path | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value or "\x00" in value:
            raise FieldError(where, f"rbd.{key}", value, "a file path")
        p = Path(value)
        return p if p.is_absolute() else base / p

    def seconds(key: str, default: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 3600:
            raise FieldError(where, f"rbd.{key}", value, "seconds, from 1 to 3600")
        return float(value)

    conf = path("conf")
    if conf is None:
        raise FieldError(where, "rbd.conf", None, "missing; the path of the cluster's ceph.conf")
    pools = table.get("replica_pools", [])
    if not isinstance(pools, list):
        raise FieldError(where, "rbd.replica_pools", pools, "a list of pool names")
    client = table.get("client", "client.admin")
    if not isinstance(client, str) or not re.match(r"^client\.[A-Za-z0-9_.-]{1,64}$", client):
        raise FieldError(where, "rbd.client", client, "a Ceph client name such as 'client.admin'")
    depth = table.get("max_clone_depth", 5)
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 16:
        raise FieldError(where, "rbd.max_clone_depth", depth,
                         "a whole number from 1 to 16 (the kernel client reads at most 16 ancestors)")
    return RbdConfig(conf=conf, pool=_pool_name(where, "rbd.pool", table.get("pool", "rbd")), client=client,
                     keyring=path("keyring"),
                     replica_pools=tuple(_pool_name(where, "rbd.replica_pools", p) for p in pools),
                     connect_timeout_s=seconds("connect_timeout", 5.0), op_timeout_s=seconds("op_timeout", 10.0),
                     max_clone_depth=depth)


def model_function(method: Method) -> FunctionPreset:
    """The model's storage function for an RBD clone made by ``method`` (4 MiB objects)."""
    return load_function({Method.SNAPSHOT: "rbd-clone", Method.THIN: "rbd-copy", Method.FULL: "full"}[method])


def load_bindings() -> tuple[ModuleType, ModuleType]:
    try:
        import rados
        import rbd
    except ImportError:
        raise BackendUnavailable(f"backend rbd needs {BINDINGS_HINT}") from None
    return rados, rbd


@dataclass(frozen=True)
class ImageInfo:
    name: str
    id: str


@dataclass
class Cluster:
    """One connection to a cluster (thread-safe: librados serves every thread of the process)."""

    config: RbdConfig
    rados: Any  # the module
    rbd: Any  # the module
    handle: Any  # rados.Rados, connected
    _ioctx: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    abandoned: bool = False
    answered_at: float = field(default_factory=time.monotonic)  # when the cluster last answered a call

    def answered(self, *_progress: object) -> int:
        """Note that the cluster answered (an operation ended, or a long one reported progress: it is the
        ``on_progress`` callback of librbd's flatten and remove, hence the arguments and the 0)."""
        self.answered_at = time.monotonic()
        return 0

    def silent_s(self) -> float:
        """Seconds since the cluster last answered any call of this connection."""
        return time.monotonic() - self.answered_at

    # --- errors -------------------------------------------------------------------------------
    @contextmanager
    def op(self, what: str) -> Iterator[None]:
        """Turn a binding's exception into one line naming the operation; note when it ends."""
        try:
            yield
        except ClonefleetError:
            raise
        except (self.rados.Error, self.rbd.Error) as exc:
            raise self._error(what, exc) from None
        finally:
            self.answered()

    def _error(self, what: str, exc: BaseException) -> ClonefleetError:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, self.rados.TimedOut | getattr(self.rbd, "Timeout", self.rados.TimedOut)) \
                or "timed out" in text.lower() or "110" in text.split("]")[0]:
            return RbdError(f"{what}: the cluster did not answer within {self.config.op_timeout_s:g} s "
                            f"(an OSD down or unreachable?); check 'ceph -c {self.config.conf} -s', then rerun")
        return RbdError(f"{what}: {text}")

    # --- pools and images ---------------------------------------------------------------------
    def ioctx(self, pool: str) -> Any:
        with self._lock:
            if pool not in self._ioctx:
                try:
                    self._ioctx[pool] = self.handle.open_ioctx(pool)
                except self.rados.ObjectNotFound:
                    try:
                        pools = ", ".join(sorted(self.handle.list_pools())) or "none"
                    except self.rados.Error:
                        pools = "unknown"
                    raise UsageError(f"rbd pool {pool!r}: no such pool in the cluster of {self.config.conf} "
                                     f"(pools: {pools}); create it ('ceph osd pool create {pool}; rbd pool init "
                                     f"{pool}') or name an existing one") from None
                except self.rados.Error as exc:
                    raise self._error(f"opening pool {pool!r}", exc) from None
            return self._ioctx[pool]

    def images(self, pool: str) -> dict[str, str]:
        """name -> image id of every image in ``pool``."""
        with self.op(f"listing images of pool {pool!r}"):
            return {str(i["name"]): str(i["id"]) for i in self.rbd.RBD().list2(self.ioctx(pool))}

    def image(self, pool: str, name: str, snapshot: str | None = None, read_only: bool = False) -> Any:
        return self.rbd.Image(self.ioctx(pool), name, snapshot=snapshot, read_only=read_only)

    def image_id(self, pool: str, name: str) -> str | None:
        with self.op(f"reading image {pool}/{name}"):
            try:
                with self.image(pool, name, read_only=True) as im:
                    return str(im.id())
            except self.rbd.ImageNotFound:
                return None

    def address(self) -> str:
        """This connection's client address (what watches and the blocklist name)."""
        return str(self.handle.get_addrs())

    def remove(self, pool: str, name: str, dead_clients: Collection[str] = ()) -> bool:
        """Remove one image; False when it was not there. Its watchers are cleared first
        (:meth:`clear_watchers`): an image open by a live client is refused in one line."""
        what = f"removing image {pool}/{name}"
        deadline = time.monotonic() + STALE_WATCH_S
        while True:
            self.clear_watchers(pool, name, dead_clients, what)
            with self.op(what):
                try:
                    self.rbd.RBD().remove(self.ioctx(pool), name, on_progress=self.answered)
                except self.rbd.ImageNotFound:
                    return False
                except self.rbd.ImageBusy:
                    # an ended client's exclusive lock or watch not yet released: bounded by the watch timeout
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1.0)
                    continue
                return True

    def clear_watchers(self, pool: str, name: str, dead_clients: Collection[str], what: str) -> None:
        """Make sure no client has the image open before it is changed or removed.

        An image a killed process had open keeps that process's watch (and exclusive lock) for about
        30 s (``osd_client_watch_timeout``); Ceph blocks a removal or a snapshot meanwhile. Watchers
        among ``dead_clients`` (addresses of runs known to have ended: they held the fleet's lock,
        which this run holds now) are blocklisted, which drops their watches at once. Any other
        watcher is a live client using the image: refused, never blocklisted.

        One watch survives both: a client killed after the OSD stored its watch but before the OSD
        armed it (the OSD arms a watch only while the client's session lives) leaves a watch that is
        listed but never times out and that the OSD's blocklist check does not see, until the OSD
        reloads the object (a restart, a repeer, its cache emptied). Such a watch, still there
        :data:`UNARMED_WATCH_S` after the blocklist, gets the image header's primary OSD to drop its
        object caches (``ceph tell osd.N cache drop``): the reload finds the blocklisted watcher and
        removes it.
        """
        with self.op(what):
            watchers = self.watchers(pool, name)
            if not watchers:
                return
            alive = [w for w in watchers if w not in dead_clients]
            if alive:
                raise RbdError(f"{what}: the image is open by client {alive[0]} (not a run of this fleet known to "
                               "have ended); close it there, then rerun")
            for addr in set(watchers):
                self.handle.blocklist_add(addr, 3600)
            # the OSD drops a blocklisted client's watch when it applies the new OSD map
            now = time.monotonic()
            deadline, reload_at = now + STALE_WATCH_S, now + UNARMED_WATCH_S
            while self.watchers(pool, name):
                if time.monotonic() > reload_at:
                    self._reload_header(pool, name, what)
                    reload_at = time.monotonic() + 2 * UNARMED_WATCH_S
                if time.monotonic() > deadline:
                    raise RbdError(f"{what}: still watched {STALE_WATCH_S:g} s after the ended clients "
                                   f"{sorted(set(watchers))} were blocklisted (watchers now: "
                                   f"{self.watchers(pool, name)}, this client {self.address()})")
                time.sleep(0.1)

    def _reload_header(self, pool: str, name: str, what: str) -> None:
        """Have the primary OSD of the image's header object drop its object caches (see
        :meth:`clear_watchers`); refused (no OSD admin rights) is one line saying what to run."""
        with self.image(pool, name, read_only=True) as im:
            header = f"rbd_header.{im.id()}"
        code, out, err = self.handle.mon_command(json.dumps(
            {"prefix": "osd map", "pool": pool, "object": header, "format": "json"}), b"")
        if code != 0:
            raise RbdError(f"{what}: cannot find the OSD of {pool}/{header} ({err.strip() or code})")
        osd = int(json.loads(out)["acting_primary"])
        code, _, err = self.handle.osd_command(osd, json.dumps({"prefix": "cache drop"}), b"")
        if code != 0:
            raise RbdError(f"{what}: a killed client's watch outlives its blocklisting (an unarmed watch); "
                           f"osd.{osd} refused to drop its caches ({err.strip() or code}): run 'ceph tell osd.{osd} "
                           "cache drop' as an admin, then rerun")

    def watchers(self, pool: str, name: str) -> list[str]:
        try:
            with self.image(pool, name, read_only=True) as im:
                return [str(w["addr"]) for w in im.watchers_list()]
        except self.rbd.ImageNotFound:
            return []
        finally:
            self.answered()

    # --- the GI ------------------------------------------------------------------------------
    def import_image(self, path: Path, fmt: str, pool: str, name: str, timeout_s: float) -> None:
        """Import a qcow2 or raw file as a new image: only its data is written (qemu-img convert
        skips holes and zero blocks; the image starts zeroed)."""
        self.ioctx(pool)  # a wrong pool is refused before the tool runs
        run_tool(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", str(path),
                  self.config.qemu_target(pool, name)], timeout_s=timeout_s)

    def protected_snapshot(self, pool: str, name: str) -> int:
        """Create (if absent) and protect the GI snapshot of an image; its snapshot id."""
        with self.op(f"snapshot {pool}/{name}@{GI_SNAPSHOT}"), self.image(pool, name) as im:
            snaps = {s["name"]: int(s["id"]) for s in im.list_snaps()}
            if GI_SNAPSHOT not in snaps:
                im.create_snap(GI_SNAPSHOT)
                snaps = {s["name"]: int(s["id"]) for s in im.list_snaps()}
            if not im.is_protected_snap(GI_SNAPSHOT):
                im.protect_snap(GI_SNAPSHOT)
            return snaps[GI_SNAPSHOT]

    def snapshot_id(self, pool: str, name: str) -> int | None:
        with self.op(f"reading snapshots of {pool}/{name}"):
            try:
                with self.image(pool, name, read_only=True) as im:
                    snaps = {s["name"]: int(s["id"]) for s in im.list_snaps()}
            except self.rbd.ImageNotFound:
                return None
            return snaps.get(GI_SNAPSHOT)

    def release_snapshot(self, pool: str, name: str, remove: bool) -> None:
        """Unprotect the GI snapshot (refused by Ceph while clones exist) and, if ``remove``, delete it."""
        with self.op(f"unprotecting {pool}/{name}@{GI_SNAPSHOT}"):
            try:
                im = self.image(pool, name)
            except self.rbd.ImageNotFound:
                return
            with im:
                if GI_SNAPSHOT not in {s["name"] for s in im.list_snaps()}:
                    return
                if im.is_protected_snap(GI_SNAPSHOT):
                    im.unprotect_snap(GI_SNAPSHOT)
                if remove:
                    im.remove_snap(GI_SNAPSHOT)

    def children(self, pool: str, name: str) -> list[tuple[str, str, str]]:
        """(pool, image name, image id) of every clone of the GI snapshot of ``pool/name``."""
        with self.op(f"listing clones of {pool}/{name}@{GI_SNAPSHOT}"), \
                self.image(pool, name, snapshot=GI_SNAPSHOT, read_only=True) as im:
            return [(str(c["pool"]), str(c["image"]), str(c["id"])) for c in im.list_children2()
                    if not c.get("trash")]

    def depth(self, pool: str, name: str) -> int:
        """1 for an image without parent, 2 for a clone of one, ..."""
        depth = 1
        with self.op(f"reading the parents of {pool}/{name}"):
            while True:
                with self.image(pool, name, read_only=True) as im:
                    try:
                        spec = im.get_parent_image_spec()
                    except self.rbd.ImageNotFound:
                        return depth
                pool, name = str(spec["pool_name"]), str(spec["image_name"])
                depth += 1

    # --- clones ------------------------------------------------------------------------------
    def clone(self, parent_pool: str, parent: str, pool: str, name: str) -> None:
        self.rbd.RBD().clone(self.ioctx(parent_pool), parent, GI_SNAPSHOT, self.ioctx(pool), name)

    def copy_sparse(self, src_pool: str, src: str, pool: str, name: str) -> None:
        with self.image(src_pool, src, snapshot=GI_SNAPSHOT, read_only=True) as im:
            im.copy(self.ioctx(pool), name)

    def data_extents(self, im: Any, size: int) -> list[tuple[int, int]]:
        """(offset, length) of the data the image holds itself (not its parent's)."""
        extents: list[tuple[int, int]] = []

        def seen(offset: int, length: int, exists: bool) -> None:
            if exists:
                extents.append((offset, length))

        im.diff_iterate(0, size, None, seen, include_parent=False, whole_object=False)
        return extents

    def copy_thick(self, src_pool: str, src: str, pool: str, name: str) -> None:
        with self.image(src_pool, src, snapshot=GI_SNAPSHOT, read_only=True) as source:
            size = int(source.size())
            self.rbd.RBD().create(self.ioctx(pool), name, size)
            with self.image(pool, name) as dest:
                dest.write_zeroes(0, size, zero_flags=self.rbd.RBD_WRITE_ZEROES_FLAG_THICK_PROVISION)
                for offset, length in self.data_extents(source, size):
                    end = offset + length
                    while offset < end:
                        chunk = source.read(offset, min(COPY_CHUNK_BYTES, end - offset))
                        dest.write(chunk, offset)
                        offset += len(chunk)
                dest.flush()

    def parent_of(self, pool: str, name: str) -> tuple[str, str, str] | None:
        """(pool, image, snapshot) of an image's parent, None without one."""
        with self.image(pool, name, read_only=True) as im:
            try:
                spec = im.get_parent_image_spec()
            except self.rbd.ImageNotFound:
                return None
        return str(spec["pool_name"]), str(spec["image_name"]), str(spec["snap_name"])

    def flatten(self, pool: str, name: str) -> None:
        with self.op(f"flattening {pool}/{name}"), self.image(pool, name) as im:
            im.flatten(on_progress=self.answered)

    def write_extents(self, pool: str, name: str, extents: Iterable[tuple[int, bytes]]) -> int:
        """Write ``(offset, data)`` chunks into an image, then flush; each chunk written counts as the
        cluster's answer (a long write is not a stall). Returns the bytes written."""
        written = 0
        with self.op(f"writing into {pool}/{name}"), self.image(pool, name) as im:
            for offset, data in extents:
                im.write(data, offset)
                written += len(data)
                self.answered()
            im.flush()
        return written

    # --- capacity ----------------------------------------------------------------------------
    def stored_bytes(self, pool: str, name: str) -> int:
        """Bytes of data the image holds itself ('rbd diff' extents without the parent's), exact to
        the extent, not rounded to whole objects as 'rbd du' is."""
        with self.op(f"measuring {pool}/{name}"), self.image(pool, name, read_only=True) as im:
            return sum(length for _, length in self.data_extents(im, int(im.size())))

    def pool_stored_bytes(self, pool: str) -> int:
        with self.op(f"reading the statistics of pool {pool!r}"):
            return int(self.ioctx(pool).get_stats()["num_bytes"])

    def abandon(self) -> None:
        """Threads are stuck in librbd calls on this connection (a stopped OSD): :meth:`close` then leaves
        the connection as it is, as shutting librados down would wait for them; the process exits."""
        self.abandoned = True

    def close(self) -> None:
        if self.abandoned:
            return
        with self._lock:
            for io in self._ioctx.values():
                io.close()
            self._ioctx.clear()
        self.handle.shutdown()


def client_bounds(config: RbdConfig) -> dict[str, str]:
    """The librados options that bound every wait of a client (module docstring): the one place they
    are set, for this process's connection and for a tool's own client (a storm's qemu-storage-daemon)."""
    return {"client_mount_timeout": f"{config.connect_timeout_s:g}",
            "rados_mon_op_timeout": f"{config.op_timeout_s:g}",
            "rados_osd_op_timeout": f"{config.op_timeout_s:g}"}


def tool_conf(config: RbdConfig) -> str:
    """A ceph.conf for a tool's own librados client: the cluster's, with a section for the client that
    adds :func:`client_bounds` and the keyring (QEMU's rbd driver takes neither on its command line)."""
    lines = [f"{k} = {v}" for k, v in client_bounds(config).items()]
    if config.keyring is not None:
        lines.append(f"keyring = {config.keyring}")
    text = config.conf.read_text(encoding="utf-8", errors="replace")
    return text + f"\n[{config.client}]\n" + "\n".join(lines) + "\n"


def connect(config: RbdConfig, modules: tuple[ModuleType, ModuleType] | None = None) -> Cluster:
    """Connect to the cluster; every configuration error is one line (exit 2), within the timeouts."""
    if not config.conf.is_file():
        raise UsageError(f"rbd.conf {config.conf}: no such file; give the path of the cluster's ceph.conf "
                         "(e.g. /etc/ceph/ceph.conf, or the one 'clonefleet dev-ceph start' prints)")
    if config.keyring is not None and not config.keyring.is_file():
        raise UsageError(f"rbd.keyring {config.keyring}: no such file; give the keyring of "
                         f"{config.client} (e.g. /etc/ceph/ceph.{config.client}.keyring) or leave it out")
    if not config.client.startswith("client.") or len(config.client) <= len("client."):
        raise UsageError(f"rbd.client {config.client!r}: a Ceph client name such as 'client.admin'")
    rados_mod, rbd_mod = modules or load_bindings()
    try:
        handle = rados_mod.Rados(conffile=str(config.conf), name=config.client)
    except rados_mod.Error as exc:
        raise UsageError(f"rbd.conf {config.conf}: Ceph cannot read it ({' '.join(str(exc).split())})") from None
    timeouts: dict[str, str] = {
        **client_bounds(config),
        "rbd_default_clone_format": "2",
        "log_to_stderr": "false",
        "err_to_stderr": "false",
    }
    if config.keyring is not None:
        timeouts["keyring"] = str(config.keyring)
    for key, value in timeouts.items():
        handle.conf_set(key, value)
    try:
        handle.connect(timeout=max(1, round(config.connect_timeout_s)))
    except rados_mod.Error as exc:
        text = " ".join(str(exc).split())
        try:
            mon = handle.conf_get("mon_host")
        except rados_mod.Error:
            mon = "?"
        handle.shutdown()
        if "auth" in text.lower() or "permission" in text.lower() or isinstance(exc, rados_mod.PermissionDeniedError):
            raise UsageError(f"rbd: {config.client} was refused by the cluster of {config.conf} ({text}); check "
                             "rbd.client and rbd.keyring") from None
        raise UsageError(f"rbd: cannot reach the Ceph monitors of {config.conf} (mon host = {mon}) within "
                         f"{config.connect_timeout_s:g} s ({text}); is the cluster running and reachable?") from None
    cluster = Cluster(config, rados_mod, rbd_mod, handle)
    try:
        cluster.ioctx(config.pool)
        for pool in config.replica_pools:
            cluster.ioctx(pool)
    except BaseException:
        cluster.close()
        raise
    return cluster


@contextmanager
def connected(config: RbdConfig, modules: tuple[ModuleType, ModuleType] | None = None) -> Iterator[Cluster]:
    cluster = connect(config, modules)
    try:
        yield cluster
    finally:
        cluster.close()
