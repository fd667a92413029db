#!/bin/bash
# Image step (every node): the node venv at /opt/gpufleet/venv (GPUFLEET_PYTHON of the boot health
# gate) holding exactly lifecycle/node-requirements.txt (pinned torch and what the bundle imports).
# Parameters: GPUFLEET_NODE_REQUIREMENTS (the requirements text), GPUFLEET_PYTHON_BIN (interpreter
#   that makes the venv, default python3), GPUFLEET_PYTHON_PACKAGE (the distribution package that
#   provides it, installed first; torch needs a newer Python than AL2023's python3), GPUFLEET_WHEELHOUSE (a directory of wheels: install from
#   it only, no index; default: the index, with torch's CUDA wheels from GPUFLEET_TORCH_INDEX).
# Staging (tests): GPUFLEET_IMAGE_ROOT=<dir> makes the venv under <dir>.
set -euo pipefail
: "${GPUFLEET_NODE_REQUIREMENTS:?the node requirements}"
root=${GPUFLEET_IMAGE_ROOT:-}
venv="$root/opt/gpufleet/venv"
if [ -n "${GPUFLEET_PYTHON_PACKAGE:-}" ] && [ -z "$root" ]; then
    if command -v dnf > /dev/null; then
        dnf install -y -q "$GPUFLEET_PYTHON_PACKAGE"
    else
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$GPUFLEET_PYTHON_PACKAGE"
    fi
fi
"${GPUFLEET_PYTHON_BIN:-python3}" -m venv --clear "$venv"
requirements="$venv/node-requirements.txt"
printf '%s\n' "$GPUFLEET_NODE_REQUIREMENTS" > "$requirements"
if [ -n "${GPUFLEET_WHEELHOUSE:-}" ]; then
    source=(--no-index --find-links "$GPUFLEET_WHEELHOUSE")
else
    source=(--extra-index-url "${GPUFLEET_TORCH_INDEX:-https://download.pytorch.org/whl/cu128}")
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir "${source[@]}" -r "$requirements"
# What was asked is what is there: pip check finds broken dependencies, and every pin must hold.
"$venv/bin/python" -m pip check
"$venv/bin/python" - "$requirements" <<'PY'
import sys
from importlib import metadata

for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if "==" in line:
        name, version = (part.strip() for part in line.split("==", 1))
        found = metadata.version(name)
        if found != version:
            sys.exit(f"image step node-venv: {name} {found} installed, {version} pinned")
print("image step node-venv: requirements installed")
PY
