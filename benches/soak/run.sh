#!/usr/bin/env bash
# Soak: 30 minutes (by default) of mixed traffic against `postern serve`, reporting errors and memory.
#
#   benches/soak/run.sh [--minutes 30] [--rate 40]
#
# Builds the release binary, then runs benches/soak/soak.py (see its header for the traffic). Loopback only.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
cargo build --release --bin postern >&2
exec python3 benches/soak/soak.py --postern "${CARGO_TARGET_DIR:-$top/target}/release/postern" "$@"
