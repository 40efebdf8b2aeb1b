#!/usr/bin/env bash
# Stages a self-contained deployment folder:
#
#   <dest>/drsn      the binary (its rpath starts with $ORIGIN/lib, see build.rs)
#   <dest>/lib/      the libtorch libraries listed in docker/runtime-libs.txt, flat
#   <dest>/models/   the shipped models (default: the repository's models/)
#
# The image's runtime stage copies <dest> as it is, and tests/docker_runtime.rs stages its
# folder with this same script, so the image and the test cannot ship different things.
#
#   LIBTORCH=<site-packages>/torch docker/collect-runtime.sh <binary> <dest> [models-folder]
#
# LIBTORCH is what `eval "$(scripts/libtorch.sh)"` exports. The script ends by checking with
# ldd that the staged binary finds every library in <dest>/lib or in the C/C++ runtime that
# every Debian image has (libc6, libgcc-s1, libstdc++6), and nowhere else.
set -euo pipefail

die() {
  echo "collect-runtime: $*" >&2
  exit 1
}

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 <binary> <dest> [models-folder]"
here="$(cd "$(dirname "$0")" && pwd)"
binary=$1
dest=$2
models=${3:-$here/../models}
list="$here/runtime-libs.txt"

[ -n "${LIBTORCH:-}" ] || die "LIBTORCH is not set; it must name the torch folder in site-packages (eval \"\$(scripts/libtorch.sh)\")"
[ -d "$LIBTORCH/lib" ] || die "LIBTORCH=$LIBTORCH has no lib/ folder; is it the torch package folder?"
site="$(cd "$LIBTORCH/.." && pwd)"
[ -f "$binary" ] && [ -x "$binary" ] || die "$binary is not an executable file"
[ -d "$models" ] || die "no models folder at $models (the shipped models, one sub-folder each)"
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then die "$dest exists and is not empty"; fi

mkdir -p "$dest/lib"
dest="$(cd "$dest" && pwd)"
cp -- "$binary" "$dest/drsn"
chmod 0755 "$dest/drsn"

shopt -s nullglob
while IFS= read -r line || [ -n "$line" ]; do
  entry="${line%%#*}"
  entry="${entry//[[:space:]]/}"
  [ -n "$entry" ] || continue
  optional=false
  if [[ $entry == \?* ]]; then
    optional=true
    entry=${entry#\?}
  fi
  # The entry is a glob on purpose: unquoted so that it expands.
  # shellcheck disable=SC2206
  matches=("$site"/$entry)
  if [ ${#matches[@]} -eq 0 ]; then
    $optional && continue
    die "$list: '$entry' matches no file under $site"
  fi
  for file in "${matches[@]}"; do
    name="$(basename "$file")"
    [ -e "$dest/lib/$name" ] && die "$list: two entries give lib/$name"
    # -L: a listed symlink ships as the file it points to.
    cp -L -- "$file" "$dest/lib/$name"
  done
done <"$list"

# -L: models linked in from elsewhere ship as files.
cp -RL -- "$models" "$dest/models"

# What the runtime's dynamic loader will find, without anything from the build's environment.
system='^(linux-vdso\.so\.1|ld-linux[-a-z0-9_.]*\.so\.[0-9]+|lib(c|m|dl|rt|pthread|util|gcc_s|stdc\+\+)\.so\.[0-9]+)$'
problems=()
while read -r name arrow path _; do
  [ -n "$name" ] || continue
  if [ "$arrow" != "=>" ]; then path=$name; fi
  base="$(basename "$name")"
  if [ "$path" = "not" ]; then
    problems+=("$name: not found")
  elif [[ $path == "$dest/lib/"* ]]; then
    continue
  elif [[ $base =~ $system ]] && [[ $path == /lib* || $path == /usr/lib* || $path != /* ]]; then
    continue
  else
    problems+=("$name => $path")
  fi
done < <(env -u LD_LIBRARY_PATH -u LD_PRELOAD ldd "$dest/drsn")
if [ ${#problems[@]} -gt 0 ]; then
  printf '  %s\n' "${problems[@]}" >&2
  die "the staged binary needs libraries from outside $dest/lib and the C/C++ runtime; list them in $list"
fi
echo "collect-runtime: staged $dest ($(du -sh "$dest" | cut -f1)): drsn, $(ls "$dest/lib" | wc -l) libraries, models: $(ls "$dest/models" | tr '\n' ' ')"
