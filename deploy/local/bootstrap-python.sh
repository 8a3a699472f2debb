#!/usr/bin/env bash
# Create the project's virtual environment with a Python >= 3.11, installing venv support
# from Debian packages when the interpreter lacks it. Used by `make install`.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: $python not found; install Python 3.11 or newer" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $("$python" --version 2>&1) is too old; Python 3.11 or newer is needed" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    echo "installing python3-venv with apt-get ..."
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo -n"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get install -y -q python3-venv || { $sudo_cmd apt-get update -q && $sudo_cmd apt-get install -y -q python3-venv; }
    "$python" -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install -q --upgrade pip
