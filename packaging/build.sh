#!/usr/bin/env bash
# Builds a release into dist/: for linux amd64 and arm64, a tar.gz archive
# (hubd, hubctl, LICENSE, README.md, the default environment file) and a
# .deb (packaging/nfpm.yaml: binaries, systemd unit, /etc/default/hubd).
#
# The version is `git describe --tags --always --dirty` (a tag v1.2.3, or
# v1.2.3-4-g0123abc past it, or a bare commit), stamped into both binaries
# with the commit (internal/version). The .deb's version is the same made
# into a Debian version that sorts right (1.2.3, 1.2.3+4.g0123abc, or
# 0.0.0~git<commit date>.<commit>). VERSION=... overrides the version.
#
#   packaging/build.sh            # everything
#   ARCHES=amd64 packaging/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
ARCHES=${ARCHES:-"amd64 arm64"}
VERSION=${VERSION:-$(git describe --tags --always --dirty)}
COMMIT=$(git rev-parse HEAD)
if [[ $VERSION == *-dirty ]]; then COMMIT+=-dirty; fi

# Debian versions must start with a digit; "+" sorts after a release, "~"
# before anything.
v=${VERSION#v}
if [[ $v =~ ^([0-9][0-9A-Za-z.]*)-([0-9]+)-g([0-9a-f]+)(-dirty)?$ ]]; then
  DEB_VERSION="${BASH_REMATCH[1]}+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}${BASH_REMATCH[4]:+.dirty}"
elif [[ $v =~ ^[0-9]+\.[0-9]+ ]]; then
  DEB_VERSION=${v//-/.}
else
  DEB_VERSION="0.0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S).${v//-/.}"
fi

pkg=github.com/notifyhub/hub/internal/version
ldflags="-s -w -X $pkg.Version=$VERSION -X $pkg.Commit=$COMMIT"

# Fail when a hubd flag has no line in the default environment file, so the
# shipped /etc/default/hubd keeps listing every setting (CI runs this).
go build -o dist/.host/hubd ./cmd/hubd
# nfpm for this machine, built once (under GOARCH=arm64 `go run` would
# build an arm64 nfpm).
GOBIN=$PWD/dist/.host go install "$NFPM"
missing=0
for f in $(env -i dist/.host/hubd --help 2>&1 | sed -n 's/^  -\([a-z0-9-]*\).*/\1/p'); do
  case $f in version|print-config) continue ;; esac
  var=HUB_$(echo "$f" | tr 'a-z-' 'A-Z_')
  grep -q "^#\?$var=" packaging/hubd.env || { echo "build.sh: packaging/hubd.env has no $var (flag --$f): add it" >&2; missing=1; }
done
[ "$missing" = 0 ] || exit 1

rm -rf dist/*.tar.gz dist/*.deb dist/SHA256SUMS  # only this build's files
mkdir -p dist
for arch in $ARCHES; do
  name=hub_${VERSION}_linux_${arch}
  out=dist/$name
  rm -rf "$out" dist/.stage
  mkdir -p "$out" dist/.stage
  echo "build: $name"
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "$ldflags" -o "$out/" ./cmd/hubd ./cmd/hubctl
  cp LICENSE README.md "$out/"
  cp packaging/hubd.env "$out/hubd.env"
  tar -C dist -czf "dist/$name.tar.gz" --owner=0 --group=0 "$name"
  cp "$out/hubd" "$out/hubctl" dist/.stage/
  GOARCH=$arch DEB_VERSION=$DEB_VERSION dist/.host/nfpm package \
    --config packaging/nfpm.yaml --packager deb --target "dist/hubd_${DEB_VERSION}_${arch}.deb"
  rm -rf "$out"
done
rm -rf dist/.stage dist/.host
(cd dist && sha256sum -- *.tar.gz *.deb > SHA256SUMS)
ls -l dist
