#!/usr/bin/env bash
# Installs everything sbd needs on a fresh Debian machine with Python 3.11 (run as root):
# system packages (WordNet 3.0, emoji fonts for the phantom dataset, Chromium for the
# browser test, PostgreSQL for the lab tests' tracking server and Optuna studies), then the
# sbd package with its test and lab extras (psycopg, Ray).
set -euo pipefail
cd "$(dirname "$0")"
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    wordnet-base wordnet-sense-index fonts-noto-color-emoji fonts-symbola \
    chromium chromium-driver git postgresql >/dev/null
fi
python3 -m pip install -q --upgrade pip
python3 -m pip install -q -e ".[dev,lab]"
