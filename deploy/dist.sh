#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make dist: a relocatable tarball of wirespan for Debian 12 hosts.
#   usage: deploy/dist.sh BUILD_DIR VERSION
# DEPENDS lists the Debian packages that provide the shared libraries the
# binary needs, found from its ELF NEEDED entries (not hand-maintained).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1 version=$2
arch=$(dpkg --print-architecture)
name=wirespan-$version-linux-$arch
stage=$out/dist/$name
rm -rf "$out/dist"
mkdir -p "$stage/bin" "$stage/share/doc/wirespan" "$stage/deploy"
install -m 0755 "$out/wirespan" "$stage/bin/"
install -m 0644 README.md LICENSE "$stage/share/doc/wirespan/"
[ -d docs ] && cp -r docs "$stage/share/doc/wirespan/"
cp -r deploy/systemd deploy/kubernetes "$stage/deploy/"
[ -d deploy/nats ] && cp -r deploy/nats "$stage/deploy/"
# NEEDED sonames -> the Debian packages that ship them
objdump -p "$out/wirespan" | awk '/NEEDED/{print $2}' | while read -r so; do
	path=$(ldconfig -p | awk -v so="$so" '$1 == so && !p {p = $NF} END {print p}')
	[ -n "$path" ] || { echo "dist: $so not found" >&2; exit 1; }
	real=$(readlink -f "$path")
	pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || dpkg -S "/usr$real" 2>/dev/null) ||
		{ echo "dist: no package ships $real" >&2; exit 1; }
	echo "${pkg%%:*}"
done | sort -u >"$stage/DEPENDS"
cat >"$stage/INSTALL" <<EOT
wirespan $version for Debian 12 ($arch)

  apt-get install \$(cat DEPENDS)
  install -m 0755 bin/wirespan /usr/local/bin/
  install -m 0644 deploy/systemd/wirespan.service /etc/systemd/system/
  wirespan doctor            # checks kernel, capabilities and NATS
  systemctl enable --now wirespan
EOT
tar -C "$out/dist" -czf "$out/$name.tar.gz" "$name"
echo "$out/$name.tar.gz"
