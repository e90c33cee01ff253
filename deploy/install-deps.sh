#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Loophole needs to build, test and benchmark.
# Idempotent: packages already present are skipped, and it says what it installs.
set -euo pipefail

# libasound2-data: alsa.conf, which defines ALSA's `null` PCM that the unpaced-device and
# unpaced-input tests open as `alsa:null` (under CI they fail without it). util-linux: taskset,
# which the bench runner pins its one-thread runs with. fonts-dejavu-core: the text of the UI's headless
# snapshots (Slint's software renderer draws with the system's fonts). xvfb, xdotool, x11-apps:
# the window test runs the real window on a virtual X display (Xvfb), finds and clicks it
# (xdotool) and takes a screenshot of it (xwd); libxkbcommon-x11-0: winit's keyboard on X11.
PKGS=(build-essential pkg-config cmake libasound2-dev libasound2-data libfontconfig1-dev fonts-dejavu-core libclang-dev sox iproute2 util-linux xvfb xdotool x11-apps libxkbcommon-x11-0)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all system packages present (${PKGS[*]})"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
