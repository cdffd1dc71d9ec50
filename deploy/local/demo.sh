#!/usr/bin/env bash
# `make run`: the product on the local stack. Starts `streamwarden serve` (API, ingest,
# archive, alerts, console) with the default thresholds, pushes a demo stream through a
# stream key over RTMP (an overlay advertising a WeChat id and a phone number, and a QR
# code with a URL), prints where to look, and runs until Ctrl-C, or for DEMO_SECONDS.
set -euo pipefail
dev_dir=${1:-.dev}
set -a; source "$dev_dir/env"; set +a
py=.venv/bin/python
api="http://127.0.0.1:$STREAMWARDEN_API__PORT"
platform=$STREAMWARDEN_DEV_TOKEN_PLATFORM
moderator=$STREAMWARDEN_DEV_TOKEN_MODERATOR
stream_id=demo-$(date +%s)
log="$dev_dir/serve.log"
pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT
trap 'exit 130' INT TERM

.venv/bin/streamwarden serve >"$log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  curl -fsS "$api/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "serve did not start; see $log" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$api/readyz" >/dev/null || { echo "serve is not ready; see $log" >&2; exit 1; }

key=$(curl -fsS -X POST "$api/v1/stream-keys" -H "Authorization: Bearer $platform" \
  -H 'Content-Type: application/json' \
  -d "{\"stream_id\": \"$stream_id\", \"provider_id\": \"demo\", \"host_id\": \"demo-host\"}")
publish_url=$($py -c 'import json,sys; print(json.load(sys.stdin)["publish_url"])' <<<"$key")

qr="$dev_dir/demo-qr.png"
$py -c 'import segno, sys; segno.make(sys.argv[1]).save(sys.argv[2], scale=8, border=2)' \
  "https://casino-demo.example.net/join" "$qr"
font=/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc
overlay="drawtext=fontfile=$font:text='加微信 abc12345 咨询':fontsize=44:fontcolor=white:box=1:boxcolor=black@0.55:x=80:y=80,drawtext=fontfile=$font:text='电话 138 0013 8000':fontsize=44:fontcolor=yellow:box=1:boxcolor=black@0.55:x=80:y=190"
ffmpeg -hide_banner -loglevel error -re -f lavfi -i "testsrc2=size=1280x720:rate=30" \
  -loop 1 -framerate 30 -i "$qr" \
  -filter_complex "[0:v][1:v]overlay=x=900:y=360,$overlay[out]" -map "[out]" \
  -c:v libx264 -preset veryfast -tune zerolatency -g 60 -pix_fmt yuv420p \
  -f flv "$publish_url" &
pids+=($!)

cat <<MSG

StreamWarden is running (log: $log), with the default thresholds.
  Console:        $api/console/login   sign in with the moderator token $moderator
  API:            $api   platform token $platform
  Demo stream:    $stream_id, pushed to $publish_url
Try:
  curl -s -H 'Authorization: Bearer $platform' $api/v1/streams/$stream_id
  source $dev_dir/env && .venv/bin/streamwarden flags tail --from-beginning --stream-id $stream_id --timeout 5
  curl -s -H 'Authorization: Bearer $STREAMWARDEN_DEV_TOKEN_METRICS' $api/metrics | grep analyzer
MSG
if [ -n "${DEMO_SECONDS:-}" ]; then
  echo "running for ${DEMO_SECONDS}s"
  sleep "$DEMO_SECONDS"
else
  echo "Ctrl-C stops everything this started"
  wait "${pids[1]}" || true
  while true; do sleep 3600; done
fi
status=$(curl -fsS -H "Authorization: Bearer $platform" "$api/v1/streams/$stream_id" || echo '{}')
flags=$(.venv/bin/streamwarden flags tail --from-beginning --stream-id "$stream_id" --timeout 3 \
  2>/dev/null | $py -c '
import collections, json, sys
count = collections.Counter(json.loads(l).get("source") for l in sys.stdin if l.strip())
print(", ".join(f"{n} {s}" for s, n in sorted(count.items())) or "none")')
echo
echo "summary: stream $stream_id: $($py -c 'import json,sys; s=json.load(sys.stdin); print(s.get("state"), "samples", s.get("samples"), "flags", s.get("flags"))' <<<"$status"); flags on Kafka: $flags"
