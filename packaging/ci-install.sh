#!/usr/bin/env bash
# CI: build the release (packaging/build.sh), install the amd64 .deb with
# dpkg as root, run the installed hubd --version, check the installed unit
# with systemd-analyze verify, then purge the package so the machine is
# left as it was. Needs root (CI runs as root); prints why and exits 1
# otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "packaging: dpkg -i needs root; run as root (CI does)"; exit 1
fi
if dpkg -s hubd >/dev/null 2>&1; then
  echo "packaging: a hubd package is already installed here; not touching it"; exit 1
fi

packaging/build.sh
version=$(git describe --tags --always --dirty)
deb=$(ls dist/hubd_*_amd64.deb)
for a in amd64 arm64; do
  tar -tzf "dist/hub_${version}_linux_$a.tar.gz" | sort | tr '\n' ' '; echo
done

purge() { dpkg --purge hubd >/dev/null || echo "packaging: dpkg --purge hubd failed"; }
trap purge EXIT
dpkg -i "$deb"
dpkg -L hubd
got=$(/usr/bin/hubd --version)
echo "$got"
case "$got" in
  "hubd $version ("*) ;;
  *) echo "packaging: /usr/bin/hubd --version printed \"$got\", want hubd $version (...)"; exit 1 ;;
esac
/usr/bin/hubctl --version
getent passwd hubd >/dev/null || { echo "packaging: postinstall made no hubd user"; exit 1; }
[ "$(stat -c %a /etc/default/hubd)" = 600 ] || { echo "packaging: /etc/default/hubd is not 0600"; exit 1; }

if ! command -v systemd-analyze >/dev/null 2>&1; then
  timeout 300 bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd' \
    || echo "packaging: the systemd package could not be installed"
fi
# verify loads the unit the way systemd would: unknown or misspelt options,
# a missing ExecStart binary, a bad SystemCallFilter set all fail it.
out=$(systemd-analyze verify /usr/lib/systemd/system/hubd.service 2>&1) || {
  echo "$out"; echo "packaging: systemd-analyze verify failed"; exit 1; }
[ -z "$out" ] || { echo "$out"; echo "packaging: systemd-analyze verify warned"; exit 1; }
echo "systemd-analyze verify hubd.service: clean"
systemd-analyze security --offline=yes /usr/lib/systemd/system/hubd.service 2>/dev/null | tail -1 || true

trap - EXIT
dpkg --purge hubd
if getent passwd hubd >/dev/null || [ -e /etc/default/hubd ] || [ -e /usr/bin/hubd ]; then
  echo "packaging: dpkg --purge left the hubd user or files behind"; exit 1
fi
echo "packaging: built, installed, verified and purged"
