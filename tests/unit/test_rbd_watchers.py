"""Clearing a killed run's watches before an image is removed (backends.rbd.Cluster.clear_watchers), on
fake bindings that behave as Ceph's OSD does: a blocklisted client's armed watch goes when the OSD applies
the new map; an unarmed one (the client killed between the OSD storing its watch and arming it) stays
until the OSD reloads the object, which ``cache drop`` on its primary OSD makes it do. The real race is
exercised by tests/backends/test_rbd_crash.py on a real cluster."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from clonefleet.backends import rbd as rbdmod
from clonefleet.backends.rbd import Cluster, RbdConfig, RbdError

DEAD = "127.0.0.1:0/1111"
LIVE = "127.0.0.1:0/2222"


class FakeOsd:
    """One image's watchers as the OSD keeps them: address -> armed."""

    def __init__(self, watchers: dict[str, bool], cache_drop_allowed: bool = True) -> None:
        self.watchers = dict(watchers)
        self.blocklist: set[str] = set()
        self.cache_drops: list[int] = []
        self.allowed = cache_drop_allowed

    def listed(self) -> list[dict[str, str]]:
        return [{"addr": a} for a in self.watchers]


def cluster_on(osd: FakeOsd) -> Cluster:
    class Image:
        def __init__(self, ioctx: object, name: str, snapshot: str | None = None, read_only: bool = False) -> None:
            pass

        def __enter__(self) -> Image:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def watchers_list(self) -> list[dict[str, str]]:
            return osd.listed()

        def id(self) -> str:
            return "1f2e3d"

    class Handle:
        def open_ioctx(self, pool: str) -> object:
            return object()

        def blocklist_add(self, addr: str, expire: int) -> None:
            osd.blocklist.add(addr)
            for a, armed in list(osd.watchers.items()):  # the new map: armed watches of blocklisted clients go
                if armed and a in osd.blocklist:
                    del osd.watchers[a]

        def mon_command(self, cmd: str, inbuf: bytes) -> tuple[int, bytes, str]:
            req = json.loads(cmd)
            assert req["prefix"] == "osd map" and req["object"] == "rbd_header.1f2e3d"
            return 0, json.dumps({"acting_primary": 3, "pgid": "2.7"}).encode(), ""

        def osd_command(self, osd_id: int, cmd: str, inbuf: bytes) -> tuple[int, bytes, str]:
            assert json.loads(cmd) == {"prefix": "cache drop"}
            if not osd.allowed:
                return -13, b"", "access denied"
            osd.cache_drops.append(osd_id)
            for a in list(osd.watchers):  # the reload arms every stored watch, then checks the blocklist
                if a in osd.blocklist:
                    del osd.watchers[a]
            return 0, b"", ""

    class Error(Exception):
        pass

    rados = types.SimpleNamespace(Error=Error, TimedOut=Error, ObjectNotFound=Error)
    rbd = types.SimpleNamespace(Image=Image, Error=Error, ImageNotFound=KeyError)
    config = RbdConfig(conf=Path("/nonexistent/ceph.conf"))
    return Cluster(config, rados, rbd, Handle())


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rbdmod, "UNARMED_WATCH_S", 0.2)
    monkeypatch.setattr(rbdmod, "STALE_WATCH_S", 2.0)


def test_an_armed_watch_of_a_dead_run_goes_with_the_blocklist_alone() -> None:
    osd = FakeOsd({DEAD: True})
    cluster_on(osd).clear_watchers("rbd", "f.vm-1", {DEAD}, "removing image rbd/f.vm-1")
    assert osd.watchers == {} and osd.blocklist == {DEAD} and osd.cache_drops == []


def test_an_unarmed_watch_is_cleared_by_the_primary_osd_reloading_the_header() -> None:
    osd = FakeOsd({DEAD: False})
    cluster_on(osd).clear_watchers("rbd", "f.vm-1", {DEAD}, "removing image rbd/f.vm-1")
    assert osd.watchers == {} and osd.cache_drops == [3]


def test_without_osd_admin_rights_one_line_says_what_to_run() -> None:
    osd = FakeOsd({DEAD: False}, cache_drop_allowed=False)
    with pytest.raises(RbdError) as err:
        cluster_on(osd).clear_watchers("rbd", "f.vm-1", {DEAD}, "removing image rbd/f.vm-1")
    text = str(err.value)
    assert "\n" not in text and "ceph tell osd.3 cache drop" in text and "access denied" in text


def test_a_live_client_is_refused_and_never_blocklisted() -> None:
    osd = FakeOsd({LIVE: True, DEAD: True})
    with pytest.raises(RbdError, match="open by client 127.0.0.1:0/2222"):
        cluster_on(osd).clear_watchers("rbd", "f.vm-1", {DEAD}, "removing image rbd/f.vm-1")
    assert osd.blocklist == set() and set(osd.watchers) == {LIVE, DEAD}
