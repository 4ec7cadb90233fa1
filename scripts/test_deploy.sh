#!/usr/bin/env bash
# The container deployment for real (make test-deploy; .ci/run runs it when LLAMA_RUNNER_TEST_DEPLOY=1):
#   1. local stand-ins for deploy/Dockerfile's three public base images, under their own names, from
#      Debian packages only (debootstrap for debian:bookworm-slim; Debian's python3.11 for
#      python:3.11-slim-bookworm; this machine's Swift toolchain for swift:6.3-bookworm), kept in
#      podman's image store between runs, so the Dockerfile builds unchanged where Docker Hub is not reachable;
#   2. deploy/Dockerfile built with podman (its layer cache kept between runs; the first build compiles
#      llama-server and whisper-server, about 15 minutes on 2 cores);
#   3. Tests/Deploy/test_compose.py: deploy/docker-compose.yml started with podman-compose (PyPI) and
#      checked against the containers; everything it started is removed at the end, also on failure.
# Podman runs with its own containers.conf (.build/deploy/containers.conf, written here): runc (crun
# fails on these machines' hybrid cgroups) and ulimits no higher than this shell's, because a sandbox
# without CAP_SYS_RESOURCE refuses higher ones (and refused nproc above 4096 here).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .build/deploy
nofile=$(ulimit -n); nproc=$(ulimit -u); [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
cat > .build/deploy/containers.conf <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$PWD/.build/deploy/containers.conf"
phase() { printf '==> %s\n' "$*"; }

phase "podman, runc and debootstrap (Debian)"
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap uidmap slirp4netns fuse-overlayfs) >/dev/null
  else
    echo "missing: ${missing[*]}: install Debian's podman, runc and debootstrap packages (as root)" >&2; exit 69
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r Tests/Python/requirements.txt podman-compose==1.5.0

phase "the demo model (scripts/bootstrap.sh)"
scripts/bootstrap.sh release >/dev/null

have() { podman image exists "$1"; }
start=$(date +%s)
phase "base image stand-ins"
if ! have docker.io/library/debian:bookworm-slim; then
  root=$(mktemp -d /var/tmp/lr-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "    debian:bookworm-slim: debootstrap --variant=minbase bookworm"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  # This machine's extra certificate authorities (a TLS-inspecting egress proxy, where there is one):
  # images that install ca-certificates trust them, so pip inside the build reaches PyPI as it does here.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates" && cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  fi
  tar -C "$root" -c . | podman import -q - docker.io/library/debian:bookworm-slim >/dev/null
  rm -rf "$root"; trap - EXIT
fi
if ! have docker.io/library/python:3.11-slim-bookworm; then
  echo "    python:3.11-slim-bookworm: Debian's python3.11"
  podman build -q --pull=never -f Tests/Deploy/base/python.Containerfile -t docker.io/library/python:3.11-slim-bookworm Tests/Deploy/base >/dev/null
fi
if ! have docker.io/library/swift:6.3-bookworm; then
  swift_root=$(dirname "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")")
  echo "    swift:6.3-bookworm: this machine's toolchain ($swift_root)"
  podman build -q --pull=never -v "$swift_root:/host-swift:ro" -f Tests/Deploy/base/swift.Containerfile \
    -t docker.io/library/swift:6.3-bookworm Tests/Deploy/base >/dev/null
fi
echo "    base images ready in $(( $(date +%s) - start )) s"

phase "llama-runner:latest from deploy/Dockerfile"
start=$(date +%s)
podman build --pull=never --layers -f deploy/Dockerfile -t localhost/llama-runner:latest . > .build/deploy/image.log 2>&1 \
  || { tail -30 .build/deploy/image.log >&2; echo "the image build failed; see .build/deploy/image.log" >&2; exit 1; }
echo "    built in $(( $(date +%s) - start )) s ($(podman image inspect localhost/llama-runner:latest --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'))"

phase "the stack (Tests/Deploy/test_compose.py)"
exec .venv/bin/python -m pytest -q -s Tests/Deploy
