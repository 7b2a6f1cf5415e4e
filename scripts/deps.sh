#!/usr/bin/env bash
# Installs the Debian packages Tandem builds, tests and demos with.
# Idempotent and non-interactive: only missing packages are installed, and
# nothing is done when everything is present. Run as root (or with sudo).
set -euo pipefail

packages=(
	# build: cgo for libsrt and miniaudio
	gcc pkg-config libsrt-openssl-dev
	# peers and tools the tests drive; python3 prints the demo's status line
	ffmpeg srt-tools curl python3
	# the two-ISP lab
	iproute2 nftables
	# Icecast interop and real capture (used by later parts of the suite)
	icecast2 liquidsoap pulseaudio libasound2-plugins alsa-utils
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "deps: all ${#packages[@]} packages present"
	exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
	sudo="sudo"
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# icecast2's package may start a daemon of its own on port 8000 (our
# switcher's default port): tests run their own icecast2 instances.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet icecast2 2>/dev/null; then
	$sudo systemctl stop icecast2 || true
fi
if [[ -x /etc/init.d/icecast2 ]] && pgrep -x icecast2 >/dev/null 2>&1; then
	$sudo /etc/init.d/icecast2 stop >/dev/null 2>&1 || true
fi
echo "deps: done"
