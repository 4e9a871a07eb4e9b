"""Backend rbd without a cluster: the [rbd] table validated field by field, and every connection error
turned into one line (exit 2), with fake bindings injected in place of python3-rados and python3-rbd."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from clonefleet.backends.rbd import RbdConfig, connect, rbd_config_from, tool_conf
from clonefleet.errors import FieldError, UsageError


def fake_modules(connect_error: str | None = None, pools: tuple[str, ...] = ("rbd",)) -> tuple[Any, Any]:
    rados = types.ModuleType("rados")

    class Error(Exception):
        pass

    class ObjectNotFound(Error):
        pass

    class TimedOut(Error):
        pass

    class PermissionDeniedError(Error):
        pass

    class Rados:
        def __init__(self, conffile: str, name: str) -> None:
            self.conf: dict[str, str] = {"mon_host": "v2:10.0.0.1:3300"}

        def conf_set(self, key: str, value: str) -> None:
            self.conf[key] = value

        def conf_get(self, key: str) -> str:
            return self.conf[key]

        def connect(self, timeout: int) -> None:
            if connect_error == "timeout":
                raise TimedOut("[errno 110] RADOS timed out (error connecting to the cluster)")
            if connect_error == "denied":
                raise PermissionDeniedError("[errno 13] RADOS permission denied (error connecting to the cluster)")

        def open_ioctx(self, pool: str) -> object:
            if pool not in pools:
                raise ObjectNotFound(f"[errno 2] RADOS object not found (error opening pool {pool!r})")
            return types.SimpleNamespace(close=lambda: None)

        def list_pools(self) -> list[str]:
            return list(pools)

        def shutdown(self) -> None:
            pass

    for cls in (Error, ObjectNotFound, TimedOut, PermissionDeniedError, Rados):
        setattr(rados, cls.__name__, cls)
    rbd = types.ModuleType("rbd")
    rbd.Error = type("Error", (Exception,), {})  # type: ignore[attr-defined]
    return rados, rbd


def config(tmp_path: Path, **kw: Any) -> RbdConfig:
    conf = tmp_path / "ceph.conf"
    conf.write_text("[global]\n", encoding="utf-8")
    return RbdConfig(conf=conf, **kw)


def test_an_unreachable_monitor_is_one_line_naming_the_monitors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot reach the Ceph monitors .* \(mon host = v2:10.0.0.1:3300\) "
                                         r"within 5 s") as e:
        connect(config(tmp_path), fake_modules("timeout"))
    assert e.value.exit_code == 2


def test_a_refused_client_names_client_and_keyring(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="client.admin was refused .* check rbd.client and rbd.keyring"):
        connect(config(tmp_path), fake_modules("denied"))


def test_a_wrong_pool_lists_the_pools_there_are(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"rbd pool 'nope': no such pool .* \(pools: rbd, vms\)"):
        connect(config(tmp_path, pool="nope"), fake_modules(pools=("rbd", "vms")))
    with pytest.raises(UsageError, match="rbd pool 'gone'"):
        connect(config(tmp_path, replica_pools=("gone",)), fake_modules())


def test_missing_files_are_refused_before_any_binding_is_used(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="rbd.conf .*: no such file"):
        connect(RbdConfig(conf=tmp_path / "none.conf"), None)
    with pytest.raises(UsageError, match="rbd.keyring .*: no such file"):
        connect(config(tmp_path, keyring=tmp_path / "k"), None)


@pytest.mark.parametrize(("table", "field"), [
    ({}, "rbd.conf"),
    ({"conf": "c", "pool": "a/b"}, "rbd.pool"),
    ({"conf": "c", "client": "admin"}, "rbd.client"),
    ({"conf": "c", "replica_pools": "p"}, "rbd.replica_pools"),
    ({"conf": "c", "max_clone_depth": 17}, "rbd.max_clone_depth"),
    ({"conf": "c", "op_timeout": 0}, "rbd.op_timeout"),
])
def test_the_rbd_table_names_the_bad_field(tmp_path: Path, table: dict[str, object], field: str) -> None:
    with pytest.raises(FieldError) as e:
        rbd_config_from(table, tmp_path, "manifest m.toml")
    assert e.value.field == field and e.value.exit_code == 2


def test_paths_are_taken_from_the_manifest_folder(tmp_path: Path) -> None:
    c = rbd_config_from({"conf": "ceph.conf", "keyring": "/etc/k", "replica_pools": ["a", "b"]}, tmp_path, "m")
    assert c.conf == tmp_path / "ceph.conf" and c.keyring == Path("/etc/k")
    assert [c.replica_pool(i) for i in range(4)] == ["rbd", "a", "b", "a"]
    assert c.qemu_target("p", "img").startswith(f"rbd:p/img:conf={tmp_path / 'ceph.conf'}:id=admin:keyring=/etc/k")


def test_a_tools_own_client_gets_the_clusters_conf_with_its_bounds_and_keyring(tmp_path: Path) -> None:
    (tmp_path / "c.conf").write_text("[global]\nmon host = 127.0.0.1:3300\n")
    config = RbdConfig(conf=tmp_path / "c.conf", client="client.storm", keyring=tmp_path / "k", op_timeout_s=7)
    text = tool_conf(config)
    assert text.startswith("[global]\nmon host = 127.0.0.1:3300\n") and config.client_id == "storm"
    section = text.split("[client.storm]\n")[1]
    assert "rados_osd_op_timeout = 7" in section and "client_mount_timeout = 5" in section
    assert f"keyring = {tmp_path / 'k'}" in section
    assert "keyring" not in tool_conf(RbdConfig(conf=tmp_path / "c.conf"))
