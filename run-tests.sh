#!/bin/sh
# Run the whole test suite as CI does (as root): installs the test
# dependencies first, then runs pytest from the skiff virtual environment.
set -eu
cd "$(dirname "$0")"
./install.sh --dev
exec /opt/skiff/venv/bin/python -m pytest -p no:cacheprovider "$@" tests
