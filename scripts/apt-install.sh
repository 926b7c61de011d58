#!/bin/sh
# scripts/apt-install.sh NAME PACKAGE...: installs the Debian packages that
# are missing (one dpkg query when all are there), with sudo when not root.
# Every *deps target of the Makefile uses it; NAME is what it reports as.
name=$1
shift
missing=
for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
        missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "make $name: all packages present"
    exit 0
fi
echo "make $name: installing$missing"
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
