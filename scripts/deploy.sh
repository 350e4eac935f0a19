#!/usr/bin/env bash
# `make deploy`: the whole stack on this machine with `ansible-playbook site.yml`.
# When no public registry answers, the official images cannot be pulled: the test bed's local registry
# (stand-in images built from Debian and PyPI) is prepared and used instead, and this says so loudly.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="${VENV:-$repo/.venv}/bin:$PATH"

docker_hub_answers() {
  python - <<'PY' >/dev/null 2>&1
import urllib.error, urllib.request
try:
    urllib.request.urlopen("https://registry-1.docker.io/v2/", timeout=5)
except urllib.error.HTTPError:
    pass  # 401 is the registry answering.
PY
}

extra=()
if docker_hub_answers; then
  echo "[deploy] Docker Hub answers: pulling the official images."
else
  cat <<'BANNER'
################################################################################################
#  NO PUBLIC CONTAINER REGISTRY ANSWERS FROM THIS MACHINE.                                     #
#  Deploying with the OFFLINE TEST BED instead: stand-in images built locally from Debian and  #
#  PyPI packages, served by a local registry on 127.0.0.1:5000 (see tests/testbed/README.md).  #
#  Grafana has no offline source and is DISABLED in this mode (tests/testbed/offline-vars.yml).#
################################################################################################
BANNER
  bash tests/testbed/testbed.sh
  extra=(-e @tests/testbed/offline-vars.yml)
fi
exec ansible-playbook site.yml "${extra[@]}" "$@"
