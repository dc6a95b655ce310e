#!/usr/bin/env bash
# Builds the upid images, upid/agent:VERSION and upid/collector:VERSION
# (VERSION from the workspace Cargo.toml), FROM scratch: no base image is
# pulled. For each image it stages a root filesystem in a temporary
# directory (the stripped binary, exactly the shared libraries `ldd` lists
# for it, /etc/passwd and /etc/group with the non-root user upid (uid
# 65532), /etc/nsswitch.conf, the CA bundle, /tmp) and runs
# `docker build -f Dockerfile.agent|Dockerfile.collector` on it.
#
#   deploy/images/build.sh [--bin-dir DIR] [agent] [collector]
#
# Without --bin-dir it builds the binaries with
# `cargo build --release --locked -p upid-agent|-p upid-collector` first
# (the collector compiles DuckDB: long the first time). With --bin-dir DIR it
# takes DIR/upid-agent and DIR/upid-collector as they are, e.g. the debug
# binaries the tests already built. Without a component name it builds both.
# Needs docker, ldd and strip (binutils). See docs/images.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
uid=65532

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
  echo "build.sh: error: $*" >&2
  exit 1
}

bin_dir=""
components=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir)
      [ $# -ge 2 ] || die "--bin-dir needs a directory"
      bin_dir=$2
      shift 2
      ;;
    --bin-dir=*)
      bin_dir=${1#--bin-dir=}
      shift
      ;;
    agent | collector)
      components+=("$1")
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
done
[ ${#components[@]} -gt 0 ] || components=(agent collector)

for tool in docker ldd strip; do
  command -v "$tool" >/dev/null || die "$tool is not installed (strip comes with binutils)"
done

version=$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || die "no version under [workspace.package] in $root/Cargo.toml"

if [ -z "$bin_dir" ]; then
  command -v cargo >/dev/null || die "cargo is not installed; build the binaries elsewhere and pass --bin-dir"
  for c in "${components[@]}"; do
    echo "build.sh: cargo build --release --locked -p upid-$c" >&2
    (cd "$root" && cargo build --release --locked -p "upid-$c")
  done
  target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  [ -n "$target_dir" ] || die "cargo metadata did not say where the target directory is"
  bin_dir="$target_dir/release"
fi
[ -d "$bin_dir" ] || die "--bin-dir $bin_dir is not a directory"

# The CA bundle (/etc/ssl/certs/ca-certificates.crt): the collector checks
# image registries over HTTPS against it; the agent's Kubernetes client uses
# it when its kubeconfig names no CA (TLS to the collector takes --ca).
ca_bundle=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
  if [ -s "$f" ]; then
    ca_bundle=$f
    break
  fi
done
[ -n "$ca_bundle" ] || die "no CA bundle found (apt-get install ca-certificates)"

stage=$(mktemp -d "${TMPDIR:-/tmp}/upid-images.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# Copies every shared library `ldd` lists for $1 (and the dynamic loader)
# into the root filesystem $2, at the path ldd printed.
copy_libraries() {
  local binary=$1 rootfs=$2 out line path
  if ! out=$(ldd "$binary" 2>&1); then
    if grep -q 'not a dynamic executable' <<<"$out"; then
      echo "build.sh: $(basename "$binary") is static: no libraries" >&2
      return 0
    fi
    die "ldd $binary failed: $out"
  fi
  if grep -q 'not found' <<<"$out"; then
    die "$binary needs libraries this machine lacks:"$'\n'"$out"
  fi
  while read -r line; do
    case "$line" in
      *' => '/*) path=${line#* => } ;;  # libc.so.6 => /lib/.../libc.so.6 (0x...)
      /*) path=$line ;;                   # /lib64/ld-linux-x86-64.so.2 (0x...)
      *) continue ;;                      # linux-vdso.so.1 (0x...): in the kernel
    esac
    path=${path%% (*}
    mkdir -p "$rootfs$(dirname "$path")"
    cp -L "$path" "$rootfs$path"
    echo "build.sh:   $path" >&2
  done <<<"$out"
}

for c in "${components[@]}"; do
  binary="$bin_dir/upid-$c"
  [ -x "$binary" ] || die "$binary not found or not executable"
  ctx="$stage/$c"
  rootfs="$ctx/rootfs"
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$ctx/data"
  chmod 1777 "$rootfs/tmp"
  chmod 0755 "$ctx/data"

  strip --strip-all -o "$rootfs/usr/local/bin/upid-$c" "$binary"
  chmod 0755 "$rootfs/usr/local/bin/upid-$c"
  echo "build.sh: upid-$c from $binary, libraries:" >&2
  copy_libraries "$rootfs/usr/local/bin/upid-$c" "$rootfs"

  cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
upid:x:$uid:$uid:upid:/var/lib/upid:/sbin/nologin
EOF
  cat >"$rootfs/etc/group" <<EOF
root:x:0:
upid:x:$uid:
EOF
  # Names from /etc/hosts first, then DNS (the Docker or cluster resolver).
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  cp -L "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf" \
    "$rootfs/etc/ssl/certs/ca-certificates.crt"

  cp "$root/Dockerfile.$c" "$ctx/Dockerfile"
  tag="upid/$c:$version"
  echo "build.sh: docker build -f Dockerfile.$c -t $tag" >&2
  docker build -q --build-arg "VERSION=$version" -t "$tag" "$ctx" >/dev/null
  # A rebuild leaves the previous image untagged: remove such leftovers of
  # this image (images a container still uses are kept).
  docker image prune -f --filter "label=io.upid.image=$c" >/dev/null
  size=$(docker image ls --format '{{.Size}}' "$tag")
  echo "build.sh: built $tag ($size)" >&2
  echo "$tag"
done
