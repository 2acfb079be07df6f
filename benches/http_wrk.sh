#!/usr/bin/env bash
# hyper HTTP/1 hello under wrk: fiber-runtime against tokio (hyper-util),
# same binary and build flags, interleaved rounds, medians.
#
# usage: benches/http_wrk.sh [ROUNDS] [CONNECTIONS] [SECONDS] [WORKERS]
#        (defaults: 5 rounds, 50 connections, 10 s, 2 workers)
# needs: wrk (apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} conns=${2:-50} secs=${3:-10} workers=${4:-2}
command -v wrk > /dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet --features hyper --example http_server
bin=target/release/examples/http_server
port=31$((RANDOM % 900 + 100))

one() { # runtime -> prints requests/s
    "$bin" --runtime "$1" --port "$port" --workers "$workers" > /dev/null &
    local pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.05
    done
    wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:$port/" |
        awk '/Requests\/sec/ { print $2 }'
    kill "$pid"
    wait "$pid" 2> /dev/null || true
}

fiber=() tokio=() ratios=()
for r in $(seq "$rounds"); do
    # Alternate which runtime goes first, so drift hits both alike.
    if (( r % 2 )); then f=$(one fiber); t=$(one tokio); else t=$(one tokio); f=$(one fiber); fi
    fiber+=("$f") tokio+=("$t") ratios+=("$(echo "$f / $t" | bc -l)")
    printf 'round %d: fiber-runtime %s req/s, tokio %s req/s, ratio %.2f\n' \
        "$r" "$f" "$t" "$(echo "$f / $t" | bc -l)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mf=$(median "${fiber[@]}") mt=$(median "${tokio[@]}")
mr=$(median "${ratios[@]}")
lo=$(printf '%s\n' "${ratios[@]}" | sort -g | head -1) hi=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)
printf 'medians (wrk -t2 -c%d -d%ds, %d workers, %d rounds): fiber-runtime %.0f req/s, tokio %.0f req/s; ratio of medians %.2f; median of round ratios %.2f (range %.2f-%.2f)\n' \
    "$conns" "$secs" "$workers" "$rounds" "$mf" "$mt" "$(echo "$mf / $mt" | bc -l)" "$mr" "$lo" "$hi"
