#!/usr/bin/env bash
# Build the site, serve it on localhost and take full-page screenshots of some pages with
# headless Chromium (Debian's `chromium` package), to look at what a reader sees.
#
#   bash scripts/screenshot_docs.sh [OUT_DIR] [PAGE...]     (default pages: home, API, results)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/bilevel_anil-docs-shots}; shift || true
pages=("$@"); [ ${#pages[@]} -gt 0 ] || pages=("" "api/" "results/omniglot/" "results/pipeline/")
command -v chromium >/dev/null || { echo "error: chromium not found (apt-get install chromium)" >&2; exit 2; }
py=${PY:-.venv/bin/python}
NO_MKDOCS_2_WARNING=1 "$py" -m mkdocs build --strict --quiet
mkdir -p "$out"
port=$(( 20000 + RANDOM % 20000 ))
"$py" -m http.server "$port" --bind 127.0.0.1 --directory site >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 1
for page in "${pages[@]}"; do
    name=$(echo "${page:-home}" | tr '/' '_' | sed 's/_$//')
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --hide-scrollbars \
        --virtual-time-budget=5000 --window-size=1400,6000 --screenshot="$out/$name.png" \
        "http://127.0.0.1:$port/$page" >/dev/null 2>&1
    echo "$out/$name.png"
done
