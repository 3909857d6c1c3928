#!/usr/bin/env bash
# Installs the Debian packages amdistill's recipes and tests use, when missing.
# flite: speech synthesis for the synthetic corpus; sox: audio conversion;
# pocketsphinx-en-us: the CMU pronouncing dictionary (word list); gcc: the C ABI example;
# python3: CI's result checks; fonts-dejavu-core: PNG plots.
set -euo pipefail
pkgs=()
command -v flite >/dev/null 2>&1 || pkgs+=(flite)
command -v sox >/dev/null 2>&1 || pkgs+=(sox)
command -v gcc >/dev/null 2>&1 || pkgs+=(gcc)
[ -f /usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict ] || pkgs+=(pocketsphinx-en-us)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
# A TTF font for the PNG plots of `amdistill compare` (SVG needs none).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || pkgs+=(fonts-dejavu-core)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing: ${pkgs[*]} (apt-get)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
