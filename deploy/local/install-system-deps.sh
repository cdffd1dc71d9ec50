#!/usr/bin/env bash
# Installs the Debian packages the local stack and tests need, only when missing.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need+=(libnginx-mod-rtmp)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# The console test drives Debian's Chromium with playwright-core (npm).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# Test media for the text and speech analyzers: a CJK font for burnt-in overlays,
# espeak-ng for English speech.
[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
# promtool (checks and unit-tests the alert rules in deploy/prometheus).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package enables and starts a system nginx on port 80; we run our own.
if command -v systemctl >/dev/null 2>&1; then
  $sudo systemctl disable --now nginx prometheus >/dev/null 2>&1 || true
fi
