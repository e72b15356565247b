#!/usr/bin/env bash
# Install Debian packages that a script needs and this machine lacks: with apt-get when run as root, else say which
# are missing and how to install them, and fail.
#
#   hack/apt-install.sh PACKAGE...
set -euo pipefail
[ $# -gt 0 ] || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing $* with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
else
  echo "missing $*: install them (Debian: apt-get install $*) and run again" >&2
  exit 1
fi
