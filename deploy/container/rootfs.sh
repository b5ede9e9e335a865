#!/usr/bin/env bash
# deploy/container/rootfs.sh -- the runtime image's layout, built into a directory.
#
#   deploy/container/rootfs.sh [--binary PATH] [--check-only] DIR
#
# Why: the Dockerfile's runtime stage is debian:12-slim plus runtime-packages.txt plus the
# binary.  Where no container engine exists (CI here) that image cannot be built, so this script
# assembles the same thing into DIR from this Debian 12 machine's installed packages: every
# shared object (and OpenSSL's configuration, the CA bundle) of runtime-packages.txt and of the
# packages they depend on, recursively; the usr-merged symlinks (/lib -> usr/lib); the binary at
# usr/local/bin/assistant-worker and the HEALTHCHECK script at usr/local/bin/aw-healthcheck.
# Then it checks, without chroot (no root needed, nothing mounted), that the binary's libraries
# resolve inside DIR only: DIR's own dynamic loader lists them with DIR's library directories
# searched first and the host's cache off (ld.so --list --inhibit-cache --library-path), so a
# library the package list lacks resolves from the host, outside DIR, and is reported as missing.
# DIR/usr/local/bin/aw-run starts the binary the same way (DIR's loader and libraries), which is
# how tests/deploy/check_rootfs.sh runs it against the local stack.
#
# What this cannot see: a library opened by an absolute path compiled into its caller is looked
# up on the host, except Cyrus SASL's plugins and OpenSSL's providers and engines, which aw-run
# points into DIR (SASL_PATH, OPENSSL_MODULES, ...); the test that runs the worker fails on any
# shared object mapped from outside DIR.  Files that are not libraries (the CA bundle curl opens
# by its compiled-in path, /etc/passwd, ...) come from the host.
#
# --binary PATH  the worker to install (default: build/assistant-worker, built Release first
#                with deploy/local/lib.sh aw_build when missing)
# --check-only   only check an existing DIR
# Exits 0 when the layout is complete; prints each missing library otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PKG_LIST="$ROOT/deploy/container/runtime-packages.txt"
BIN=
CHECK_ONLY=0
DIR=
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift 2 ;;
    --check-only) CHECK_ONLY=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    -*) echo "rootfs.sh: unknown option $1" >&2; exit 2 ;;
    *) DIR=$1; shift ;;
  esac
done
[ -n "$DIR" ] || { echo "usage: rootfs.sh [--binary PATH] [--check-only] DIR" >&2; exit 2; }
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
LIBDIRS="$DIR/usr/lib/$MULTIARCH:$DIR/usr/lib:$DIR/usr/local/lib"

# The dynamic loader inside DIR (the PT_INTERP of the binary, under DIR).
loader() {
  local interp
  interp=$(readelf -l "$DIR/usr/local/bin/assistant-worker" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  [ -n "$interp" ] || { echo "rootfs.sh: no program interpreter in the binary" >&2; return 1; }
  printf '%s%s\n' "$DIR" "$interp"
}

# check: every library of the binary resolves under DIR.
check() {
  local ld out bad
  ld=$(loader) || return 1
  [ -e "$ld" ] || { echo "rootfs.sh: missing the dynamic loader $ld" >&2; return 1; }
  out=$("$ld" --list --inhibit-cache --library-path "$LIBDIRS" "$DIR/usr/local/bin/assistant-worker" 2>&1) || {
    echo "$out" >&2
    echo "rootfs.sh: the loader could not resolve the binary's libraries" >&2
    return 1
  }
  # "name => path (addr)": a path outside DIR, or "not found", is a library the layout lacks.
  bad=$(printf '%s\n' "$out" | awk -v dir="$DIR/" '
    /=>/ { if ($3 == "not" || index($3, dir) != 1) print "  missing: " $1 " (resolved to " $3 ")" }')
  if [ -n "$bad" ]; then
    printf '%s\n' "$bad" >&2
    echo "rootfs.sh: the runtime layout lacks libraries: add their Debian packages to $PKG_LIST" >&2
    return 1
  fi
  printf '%s\n' "$out" | awk '/=>/ {n++} END {printf "rootfs.sh: %d libraries, all inside the layout\n", n}'
}

if [ $CHECK_ONLY = 1 ]; then
  check
  exit $?
fi

if [ -z "$BIN" ]; then
  # shellcheck source=../local/lib.sh
  . "$ROOT/deploy/local/lib.sh"
  BIN="$ROOT/build/assistant-worker"
  [ -x "$BIN" ] || aw_build "$ROOT/build" -DCMAKE_BUILD_TYPE=Release
fi
[ -x "$BIN" ] || { echo "rootfs.sh: no binary at $BIN" >&2; exit 1; }

# The package closure: the list plus everything it Depends/Pre-Depends on, recursively, among
# the installed packages (an alternative "a | b" takes the first one installed).  dpkg's database
# is read once (one query per package is slow on a busy machine).
declare -A deps_of=() seen=()
while IFS=$'\t' read -r name status deps; do
  case "$status" in *" installed") deps_of[${name%%:*}]=$deps ;; esac
done < <(dpkg-query -W -f='${binary:Package}\t${Status}\t${Pre-Depends}, ${Depends}\n')
queue=()
while read -r p; do
  p=${p%%#*}; p=${p// /}
  [ -n "$p" ] || continue
  [ -n "${deps_of[$p]+x}" ] || { echo "rootfs.sh: $p (runtime-packages.txt) is not installed here" >&2; exit 1; }
  queue+=("$p")
done <"$PKG_LIST"
while [ ${#queue[@]} -gt 0 ]; do
  p=${queue[0]}; queue=("${queue[@]:1}")
  [ -n "${seen[$p]:-}" ] && continue
  seen[$p]=1
  IFS=',' read -ra alts <<<"${deps_of[$p]}"
  for alt in "${alts[@]}"; do
    IFS='|' read -ra choices <<<"$alt"
    for c in "${choices[@]}"; do
      c=${c%%(*}; c=${c%%:*}; c=${c// /}
      [ -n "$c" ] || continue
      if [ -n "${deps_of[$c]+x}" ]; then queue+=("$c"); break; fi
    done
  done
done

# DIR is replaced only when it is one of ours (the marker) or empty: never a directory of anything else.
if [ -e "$DIR" ] && [ ! -f "$DIR/.aw-rootfs" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
  echo "rootfs.sh: $DIR exists and is not a layout of this script; not replacing it" >&2
  exit 2
fi
rm -rf "$DIR"
mkdir -p "$DIR" && touch "$DIR/.aw-rootfs"
mkdir -p "$DIR/usr/lib" "$DIR/usr/lib64" "$DIR/usr/bin" "$DIR/usr/sbin" "$DIR/usr/local/bin" "$DIR/etc/ssl/certs" \
  "$DIR/tmp" "$DIR/etc/assistant-worker"
# Debian 12 is usr-merged: /lib, /lib64, /bin, /sbin are symlinks into /usr.
for d in lib lib64 bin sbin; do ln -s "usr/$d" "$DIR/$d"; done

# Shared objects and OpenSSL's files of every package in the closure, at their paths (DIR/lib
# is DIR/usr/lib, as above); then an absolute symlink is made relative to DIR, so it never points
# back at the host.  One awk and one cp: a fork per file is slow on a busy machine.
arch=$(dpkg --print-architecture)
lists=()
for p in "${!seen[@]}"; do
  for l in "/var/lib/dpkg/info/$p.list" "/var/lib/dpkg/info/$p:$arch.list"; do
    [ -f "$l" ] && lists+=("$l")
  done
done
files=$(awk '
  !/^(\/lib\/|\/lib64\/|\/usr\/lib\/|\/etc\/ssl\/)/ { next }
  /\.so$|\.so\.|^\/usr\/lib\/ssl\/|^\/etc\/ssl\/|\/ossl-modules\/|\/engines-3\// { print }
' "${lists[@]}" | sort -u | while read -r f; do
  if [ -L "$f" ] || { [ -f "$f" ] && [ ! -d "$f" ]; }; then printf '%s\n' "$f"; fi
done)
n=$(printf '%s\n' "$files" | grep -c .)
printf '%s\n' "$files" | xargs -d '\n' cp -P --parents -t "$DIR"
while read -r l; do
  t=$(readlink "$l")
  # Remove first: ln onto a symlink to a directory would create the link inside its target.
  rm -f "$l" && ln -sr "$DIR$t" "$l"
done < <(find "$DIR" -type l -lname '/*')
# The CA bundle (generated by ca-certificates' postinst, so not in its file list).
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp -p /etc/ssl/certs/ca-certificates.crt "$DIR/etc/ssl/certs/"

install -m 0755 "$BIN" "$DIR/usr/local/bin/assistant-worker"
install -m 0755 "$ROOT/deploy/container/healthcheck.sh" "$DIR/usr/local/bin/aw-healthcheck"
ld=$(loader)
# The plugins libraries load by a compiled-in absolute path are pointed into the layout too, where
# their environment variables allow it: Cyrus SASL's (librdkafka initialises it; the plugins are
# libsasl2-modules, a Recommends the image does not install) and OpenSSL's providers and engines.
L="$DIR/usr/lib/$MULTIARCH"
cat >"$DIR/usr/local/bin/aw-run" <<EOF
#!/bin/sh
# Starts the worker of this layout with its own loader and libraries only (rootfs.sh).
SASL_PATH="$L/sasl2" OPENSSL_MODULES="$L/ossl-modules" OPENSSL_ENGINES="$L/engines-3" \\
OPENSSL_CONF="$DIR/usr/lib/ssl/openssl.cnf" SSL_CERT_FILE="$DIR/etc/ssl/certs/ca-certificates.crt" \\
  exec "$ld" --inhibit-cache --library-path "$LIBDIRS" "$DIR/usr/local/bin/assistant-worker" "\$@"
EOF
chmod 0755 "$DIR/usr/local/bin/aw-run"
echo "rootfs.sh: $DIR: ${#seen[@]} packages, $n files, $(du -sh "$DIR" | cut -f1)"
check
