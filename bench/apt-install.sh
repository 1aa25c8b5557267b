#!/usr/bin/env bash
# Installs Debian packages the benchmarks need, when a command is missing:
#   bash bench/apt-install.sh COMMAND... -- PACKAGE...
set -euo pipefail
cmds=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do cmds+=("$1"); shift; done
shift
missing=0
for c in "${cmds[@]}"; do command -v "$c" >/dev/null || missing=1; done
[ "$missing" = 0 ] && exit 0
echo "== installing $* from Debian's packages"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q "$@" >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "$@" >/dev/null; }
