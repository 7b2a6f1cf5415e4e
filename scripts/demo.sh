#!/usr/bin/env bash
# make demo: the switcher and the real appliance daemon (tone source,
# matched primary and fallback feeds from one capture clock) over two local
# links: the primary leaves from 127.0.0.1, the fallback from 127.0.0.2.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

http_port=${TANDEM_DEMO_HTTP_PORT:-8000}
srt_port=${TANDEM_DEMO_SRT_PORT:-9000}
stream=${TANDEM_DEMO_STREAM:-live/demo}
logdir=$(mktemp -d /tmp/tandem-demo.XXXXXX)
# Where the binaries are (make demo builds them into bin/).
bin=${TANDEM_DEMO_BIN:-bin}

pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping..."
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "stopped. logs are in $logdir"
	# Without exit the status loop below would go on after a signal that
	# arrives while it is not in sleep.
	exit 0
}
trap stop INT TERM EXIT

TANDEM_SWITCHER_SRT_ADDR=":$srt_port" TANDEM_SWITCHER_HTTP_ADDR=":$http_port" TANDEM_SWITCHER_STATE_DIR="$logdir/switcher-state" \
	"$bin/tandem-switcher" >"$logdir/switcher.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
	curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
if ! curl -fsS "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1; then
	echo "the switcher did not start; its log:"; cat "$logdir/switcher.log"; exit 1
fi

# The appliance on its built-in defaults: a 440 Hz tone on one capture
# clock, primary (128 kbit/s) from 127.0.0.1 and fallback (64 kbit/s) from
# 127.0.0.2, both to the switcher over SRT.
mkdir -p "$logdir/appliance"
TANDEM_STATE_DIR="$logdir/appliance" TANDEM_API_SOCKET="$logdir/appliance/api.sock" TANDEM_API_HTTP= \
	TANDEM_FEEDS_PRIMARY_DEST="srt://127.0.0.1:$srt_port" TANDEM_FEEDS_FALLBACK_DEST="srt://127.0.0.1:$srt_port" \
	TANDEM_DEVICE_ID="${stream#*/}" TANDEM_APP="${stream%%/*}" \
	"$bin/tandem" run >"$logdir/appliance.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$http_port/api/v1/streams" 2>/dev/null | grep -q '"state": "online"' && break
	sleep 0.1
done

cat <<MSG

  Tandem demo is on air.

  listen     ffplay http://127.0.0.1:$http_port/$stream.aac     (or mpv, VLC, a browser)
  status     curl -s http://127.0.0.1:$http_port/api/v1/streams
  events     curl -s http://127.0.0.1:$http_port/api/v1/events
  logs       $logdir/

  appliance  TANDEM_API_SOCKET=$logdir/appliance/api.sock $bin/tandem status
  HLS        http://127.0.0.1:$http_port/$stream/index.m3u8
  metrics    curl -s http://127.0.0.1:$http_port/metrics

  The primary feed (128 kbit/s) leaves from 127.0.0.1, the fallback
  (64 kbit/s) from 127.0.0.2; both carry the same capture timeline.
  Kill the primary's encoder and listen: nothing changes.
      pkill -9 -f 'ffmpeg.*-b:a 128000'
  The appliance restarts it on the same timeline within a second.
  Switch by hand (failover stays armed):
      curl -s -XPOST -d '{"input":"fallback"}' http://127.0.0.1:$http_port/api/v1/streams/$stream/active

  Ctrl-C stops everything.

MSG

# Print a one-line status every 5 s until interrupted.
while sleep 5; do
	curl -fsS "http://127.0.0.1:$http_port/api/v1/streams" 2>/dev/null | python3 -c '
import json,sys
for s in json.load(sys.stdin)["streams"]:
    o=s["output"]; ins=", ".join("%s %.0f kbit/s"%(i["role"],i["bitrate_kbps"]) for i in s["inputs"])
    print("%s %s %s active=%s  emitted=%d from_fallback=%d holes=%d  [%s]"%(s["id"],s["state"],s.get("mode",""),s.get("active_input",""),o["frames_emitted"],o["frames_from_fallback"],o["holes_filled"],ins))
' 2>/dev/null || echo "(switcher not answering)"
done
