#!/bin/bash
# Entrypoint of the offline Prefect stand-in, behaving like the official image's:
# install EXTRA_PIP_PACKAGES when set, then run the command (an interactive shell without one).
set -e
if [ -n "${EXTRA_PIP_PACKAGES:-}" ]; then
  echo "+pip install ${EXTRA_PIP_PACKAGES}"
  # shellcheck disable=SC2086  # a space-separated package list, split on purpose
  pip install ${EXTRA_PIP_PACKAGES}
fi
if [ "$#" -eq 0 ]; then
  exec bash --login
fi
exec "$@"
