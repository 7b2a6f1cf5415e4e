#!/usr/bin/env bash
# make bench: prints the figures the issues ask for. Benchmarks do not gate
# CI; a figure that misses its target is printed as measured.
# The lab benchmarks need root (network namespaces).
set -uo pipefail
cd "$(dirname "$0")/.."

# run pkg pattern [flags...]: extra flags go to go test (-v keeps a
# benchmark's own log lines, which peers' logs would otherwise push out of
# go test's 10-line benchmark log).
run() {
	local pkg=$1 pattern=$2
	shift 2
	echo "== go test -bench '$pattern' $* $pkg"
	go test -run '^$' -bench "$pattern" -benchtime=1x -timeout 15m "$@" "$pkg" 2>&1 |
		grep -vE 'level=(INFO|WARN|DEBUG)|^=== ' | grep -E 'Benchmark|bench_test|ok|FAIL|---' || true
	echo
}

echo "Tandem benchmarks on $(nproc) cores, $(date -u +%FT%TZ)"
echo
# Parsers and fan-out: ns/op and allocations.
go test -run '^$' -bench . -benchmem ./uplink/mpegts/ ./uplink/adts/ ./uplink/media/ ./uplink/icy/ 2>&1 | grep -E '^Benchmark|^ok'
echo
# Issue 2: output latency in the lab, and switcher cost per aligned pair.
run ./uplink/switcher/ 'BenchmarkLabLatency'
run ./uplink/switcher/ 'BenchmarkSwitcherPairs'
# Issue 4: detection-to-switch per failure signal.
run ./uplink/switcher/ 'BenchmarkDetectionToSwitch'
# Issue 3: the appliance against a single ffmpeg doing the same job, and
# capture-to-listener latency with the defaults.
run ./firmware/daemon/ 'BenchmarkApplianceVsFFmpeg' -v
run ./firmware/daemon/ 'BenchmarkCaptureToListenerLatency' -v
# Issue 5: RTMP and SRT ingest of 100 A/V streams (H.264 + AAC, 2 Mbit/s):
# the switcher's CPU and RSS per stream.
run ./uplink/switcher/ 'BenchmarkAVIngest'
# Issue 5: 1000 HTTP listeners of one 128 kbit/s stream, the switcher
# binary against icecast2 fed the same bytes (target: CPU ratio <= 1.0).
run ./uplink/switcher/ 'BenchmarkListeners1000VsIcecast'
