#!/usr/bin/env bash
# Create the Python 3.10 virtual environment at $1 (betty-ml and learn2learn need 3.10).
set -euo pipefail
venv=${1:-.venv}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then
    exit 0
fi
check='import sys; sys.exit(sys.version_info[:2] != (3, 10))'
py=""
if command -v python3.10 >/dev/null 2>&1 && python3.10 -c "$check" 2>/dev/null; then
    py="python3.10"
elif command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.|$)' | sort -V -r); do
        if PYENV_VERSION=$v python3.10 -c "$check" 2>/dev/null; then
            py="env PYENV_VERSION=$v python3.10"
            break
        fi
    done
fi
if [ -z "$py" ]; then
    echo "error: Python 3.10 not found (betty-ml needs Python < 3.11); install it, e.g. 'pyenv install 3.10', and retry" >&2
    exit 2
fi
rm -rf "$venv"
$py -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
