#!/usr/bin/env bash
# Prints the path of a ptxas that can assemble the kernels for sm_80 and
# sm_90, fetching one when none is found: Debian's nvidia-cuda-toolkit
# (bookworm, component non-free, ptxas 11.8) downloaded through a private
# apt sources list and state directory, and unpacked with dpkg -x, so the
# machine's own apt configuration and installed packages stay as they were.
# Search order: $PTXAS, ptxas on PATH, the cache folder ($PTXAS_CACHE,
# default ${XDG_CACHE_HOME:-$HOME/.cache}/compresskv-ptxas).
set -euo pipefail
if [ -n "${PTXAS:-}" ] && [ -x "$PTXAS" ]; then echo "$PTXAS"; exit 0; fi
if command -v ptxas >/dev/null; then command -v ptxas; exit 0; fi
cache=${PTXAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/compresskv-ptxas}
bin="$cache/root/usr/bin/ptxas"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

mkdir -p "$cache/lists/partial" "$cache/deb"
# The same archive as the machine's Debian sources, with non-free.
uri=$(grep -rhoE 'https?://[^ ]*debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep -v security | head -1 | tr -d ' ' || true)
uri=${uri:-http://deb.debian.org/debian}
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
echo "deb $uri $suite main contrib non-free" >"$cache/sources.list"
opts=(-o "Dir::Etc::sourcelist=$cache/sources.list" -o "Dir::Etc::sourceparts=-"
      -o "Dir::State::Lists=$cache/lists" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root" -qq)
apt-get "${opts[@]}" update >&2
(cd "$cache/deb" && apt-get "${opts[@]}" download nvidia-cuda-toolkit >&2)
dpkg -x "$cache"/deb/nvidia-cuda-toolkit_*.deb "$cache/root"
rm -rf "$cache/deb" "$cache/lists"
if [ ! -x "$bin" ]; then echo "nvidia-cuda-toolkit holds no usr/bin/ptxas" >&2; exit 1; fi
echo "$bin"
