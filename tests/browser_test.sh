#!/bin/sh
# report.html in a real browser: a short finetune run writes its page, headless Chromium (Debian's
# chromium-headless-shell) loads it offline; the page's script marks on <body> how many charts it
# made, how many have ink on their canvas and how many script errors it saw (html_report.h), and a
# screenshot is taken. Fails unless the run's 3 charts (reward, distance to p*, loss) were made and
# drawn with no error.
# Usage: browser_test.sh RAMFLOW_BINARY
set -eu
ramflow=$1
browser=$(command -v chromium-headless-shell || command -v chromium || true)
[ -n "$browser" ] || { echo "browser_test: no chromium-headless-shell (scripts/setup installs it)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$ramflow" finetune --out "$work/run" --cache-dir "$work/cache" --pretrain-steps 200 --steps 20 \
  --eval-every 5 --eval-samples 300 --eval-pool 2000 --eval-curve-samples 100 --eval-steps 10 \
  > "$work/finetune.log" 2>&1 || { cat "$work/finetune.log" >&2; exit 1; }
[ -s "$work/run/report.html" ] || { echo "browser_test: no report.html" >&2; exit 1; }
flags="--headless --no-sandbox --disable-gpu --allow-file-access-from-files --virtual-time-budget=15000"
"$browser" $flags --dump-dom "file://$work/run/report.html" > "$work/dom.html" 2> "$work/browser.log"
"$browser" $flags --window-size=1280,2400 --screenshot="$work/shot.png" \
  "file://$work/run/report.html" >> "$work/browser.log" 2>&1
body=$(grep -o '<body[^>]*>' "$work/dom.html" || true)
echo "browser_test: $body"
charts=$(echo "$body" | sed -n 's/.*data-charts="\([0-9]*\)".*/\1/p')
drawn=$(echo "$body" | sed -n 's/.*data-drawn="\([0-9]*\)".*/\1/p')
errors=$(echo "$body" | sed -n 's/.*data-errors="\([0-9]*\)".*/\1/p')
[ "${charts:-0}" -ge 3 ] || { echo "browser_test: $charts charts made, expected 3" >&2; exit 1; }
[ "$drawn" = "$charts" ] || { echo "browser_test: $drawn of $charts charts drawn" >&2; exit 1; }
[ "$errors" = "0" ] || { echo "browser_test: $errors script errors" >&2; cat "$work/browser.log" >&2; exit 1; }
if grep -E "Uncaught|CONSOLE.*(ERROR|Error)" "$work/browser.log" >&2; then
  echo "browser_test: errors on the browser's console" >&2; exit 1
fi
# The slider holds a picture per evaluation: steps 0, 5, 10, 15 and the final 20.
pictures=$(grep -o '"src":"data:image/png;base64,[A-Za-z0-9+/=]*","step":[0-9]*' "$work/run/report.html" | wc -l)
[ "$pictures" -eq 5 ] || { echo "browser_test: $pictures evaluation pictures, expected 5" >&2; exit 1; }
size=$(wc -c < "$work/shot.png")
[ "$size" -gt 20000 ] || { echo "browser_test: screenshot of $size bytes" >&2; exit 1; }
echo "browser_test: $charts charts drawn, 5 evaluation pictures, screenshot $size bytes"
