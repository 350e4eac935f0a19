#!/usr/bin/env bash
# Controller bootstrap: a .venv on Python >= 3.12 with the pinned dependencies of requirements.txt and the
# collections of requirements.yml. Idempotent and quick when there is nothing to do: each step is skipped
# while a stamp holding the hash of the file that defines it is current.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

python_ok() {
  # A pyenv shim exists even when its version is not selected: run it to be sure it works.
  "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 \
      "$HOME"/.pyenv/versions/3.13*/bin/python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
      /usr/local/bin/python3.13 /usr/local/bin/python3.12 /usr/bin/python3.13 /usr/bin/python3.12 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# A machine's pip configuration may add file:// indexes that hold only a few projects; pip then warns
# once per project missing from each ("Location 'file:///...' is ignored: it is neither a file nor a
# directory"), a wall of lines that buries the real messages. Only those lines are dropped: every
# other line of pip's stderr, and pip's exit status, pass through.
pip_install() {
  { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 1>&3 3>&- \
      | sed -E "/^WARNING: Location 'file:[^']*' is ignored: it is neither a file nor a directory\.\$/d" >&2
  } 3>&1
}

hash_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

ensure_venv() {
  if [ -x "$venv/bin/python" ] && python_ok "$venv/bin/python"; then
    return 0
  fi
  local python
  python=$(find_python) || die "no Python >= 3.12 found (ansible-core 2.21 needs it on the controller).
  Install one, e.g. 'apt-get install python3.12-venv' on a distribution that packages it, or
  'pyenv install 3.13', or point PYTHON=/path/to/python3.12+ at one, then run 'make bootstrap' again."
  say "creating $venv with $python ($("$python" --version 2>&1))"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  pip_install --upgrade pip
}

ensure_requirements() {
  local stamp="$venv/.requirements.sha256" want
  want=$(hash_of "$repo/requirements.txt")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  say "installing pinned Python dependencies from requirements.txt"
  pip_install -r "$repo/requirements.txt"
  echo "$want" > "$stamp"
}

galaxy_answers() {
  "$venv/bin/python" - <<'PY' >/dev/null 2>&1
import urllib.request
urllib.request.urlopen("https://galaxy.ansible.com/api/", timeout=5)
PY
}

ensure_collections() {
  local stamp="$venv/.collections.sha256" want
  want=$(hash_of "$repo/requirements.yml")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if galaxy_answers; then
    say "installing collections from requirements.yml (Galaxy answers)"
    "$venv/bin/ansible-galaxy" collection install -r "$repo/requirements.yml" \
      -p "$repo/.ansible/collections" >/dev/null
  else
    say "Galaxy does not answer: using the collections bundled with the ansible package:"
    "$venv/bin/ansible-galaxy" collection list 2>/dev/null \
      | awk '/^(community\.docker|ansible\.posix) / {print "[bootstrap]   " $1 " " $2}' || true
  fi
  echo "$want" > "$stamp"
}

ensure_venv
ensure_requirements
ensure_collections
say "ready: ansible-core $("$venv/bin/python" -c "import ansible.release as r; print(r.__version__)"), $("$venv/bin/python" --version)"
