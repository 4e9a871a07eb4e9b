#!/usr/bin/env bash
# Install what clonefleet needs on a Debian machine, idempotently:
# Debian packages (storage tools) as root, then a virtualenv with the package and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
APT_PACKAGES=(qemu-utils qemu-system-common qemu-system-x86 debootstrap fio xfsprogs btrfs-progs e2fsprogs util-linux python3-venv
              ceph-mon ceph-mgr ceph-osd ceph-common python3-rados python3-rbd qemu-block-extra
              chromium chromium-driver)  # chromium: the report's browser test (tests/browser)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 2
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: clonefleet needs Python >= 3.11; '$PYTHON' is $("$PYTHON" --version 2>&1)" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.clonefleet-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing clonefleet and its dev tools into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

# Backend rbd: Debian's python3-rados and python3-rbd install for /usr/bin/python3 only. When the venv's
# Python is the same minor version, a .pth file points it at a folder holding only those two modules
# (links), so nothing else of the system's site-packages leaks into the venv.
bindings="$VENV/ceph-bindings"
pyver=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
sysver=$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || true)
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$pyver" = "$sysver" ]; then
  mkdir -p "$bindings"
  for mod in rados rbd; do
    so=$(/usr/bin/python3 -c "import $mod; print($mod.__file__)" 2>/dev/null || true)
    [ -n "$so" ] && ln -sf "$so" "$bindings/"
  done
  (cd "$bindings" && pwd) > "$site/clonefleet-ceph-bindings.pth"
elif ! "$VENV/bin/python" -c 'import rados, rbd' 2>/dev/null; then
  echo "setup: backend rbd unavailable: the venv's Python is $pyver, Debian's python3-rados/python3-rbd are for" \
       "${sysver:-no system Python}; make the venv with /usr/bin/python3 (PYTHON=/usr/bin/python3 make setup)" >&2
fi
