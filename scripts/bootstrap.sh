#!/usr/bin/env bash
# Install everything patchswarm needs on a fresh Debian machine (root) and make it ready to run.
# Idempotent: rerunning skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# Headless Chromium: the HTML report is checked in a real browser by the tests.
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || need_apt+=(chromium chromium-driver)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Installed, with its dependencies, from this very checkout? (Checked from / so the checkout itself
# on sys.path does not fake an installation.)
here=$(pwd)
installed=$(cd / && python3 -c "import os, importlib.metadata, patchswarm, litellm, docker, swebench, ray, selenium, mypy; importlib.metadata.version('types-PyYAML'); print(os.path.dirname(os.path.dirname(patchswarm.__file__)))" 2>/dev/null || true)
if [ "$installed" != "$here" ] || [ "${PATCHSWARM_REINSTALL:-0}" = 1 ]; then
  echo "bootstrap: installing the patchswarm package"
  python3 -m pip install -q -e '.[test]'
  # pyenv (when present) only finds new console scripts after a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

export LITELLM_LOCAL_MODEL_COST_MAP=True
# Engine (started in the background when none answers) and the offline-built base image.
python3 -m patchswarm.cli doctor --fix
