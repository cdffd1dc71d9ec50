#!/usr/bin/env bash
# `make run`: publish a generated 720p30 stream to the local RTMP edge and moderate it live.
set -euo pipefail
dev_dir=${1:-.dev}
set -a; source "$dev_dir/env"; set +a
seconds=${DEMO_SECONDS:-20}
threshold=${DEMO_THRESHOLD:-0}
stream_id=demo-$(date +%s)
url="$STREAMWARDEN_RTMP_URL/$stream_id"
echo "publishing a ${seconds}s test stream to $url (ffmpeg)"
ffmpeg -hide_banner -loglevel error -re -f lavfi -i "testsrc2=size=1280x720:rate=30" \
  -t "$seconds" -c:v libx264 -preset veryfast -tune zerolatency -g 60 -pix_fmt yuv420p \
  -f flv "$url" &
publisher=$!
trap 'kill $publisher 2>/dev/null || true' EXIT
echo "moderating with threshold $threshold (0 = audit mode: every sample is flagged)"
.venv/bin/streamwarden run --source "$url" --stream-id "$stream_id" --threshold "$threshold"
wait $publisher || true
cat <<MSG

Flags went to the Kafka topic streamwarden.flags at $STREAMWARDEN_KAFKA__BOOTSTRAP_SERVERS;
snapshots are in the bucket named in the summary at $STREAMWARDEN_S3__ENDPOINT.
Read the flags:   source $dev_dir/env && .venv/bin/streamwarden flags tail --from-beginning --stream-id $stream_id --timeout 5
Stop the stack:   make dev-down
MSG
