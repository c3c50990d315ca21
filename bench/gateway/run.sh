#!/usr/bin/env bash
# Gateway benchmark, one run on one machine: a tiny app called directly,
# through nginx as a reverse proxy, and through the Flint gateway, each a
# process of its own.
#  1. wrk, 64 keep-alive connections: requests/s and p50/p99 (saturation).
#  2. A fixed 1,000 req/s (the `rate` role of the bench binary): p50/p99,
#     and the latency each proxy adds over the direct call.
#  3. The gateway's resident memory idle after start and idle after load.
# With FLINT_BENCH_AUTH=1 (the default) the same gateway process also
# serves two Functions with auth (bench/gateway/auth.rs), measured as the
# targets gateway-key (an API key) and gateway-jwt (a JWT, ES256, or RS256
# with FLINT_BENCH_JWT_ALG=RS256), and the CPU each adds per request over
# the plain gateway target is printed.
# Settings: FLINT_BENCH_SECONDS (default 5), FLINT_BENCH_ROUNDS (5),
# FLINT_BENCH_CONNECTIONS (64), FLINT_BENCH_RATE (1000), FLINT_BENCH_GATEWAY_THREADS (default: one per core),
# FLINT_BENCH_FLOOR (1 adds the floor role, see below), FLINT_BENCH_AUTH (1),
# FLINT_BENCH_JWT_ALG (ES256), FLINT_BENCH_ROUTES (0; N > 0 adds the target
# gateway-routes: a second gateway process whose table holds N idle
# Functions besides the ones measured, for the hot path with a large table).
# With the defaults (5 targets) the measuring takes about 5 minutes.
# Results go to docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${FLINT_BENCH_SECONDS:-5}
CONNS=${FLINT_BENCH_CONNECTIONS:-64}
RATE=${FLINT_BENCH_RATE:-1000}
ROUNDS=${FLINT_BENCH_ROUNDS:-5}
AUTH=${FLINT_BENCH_AUTH:-1}
export FLINT_BENCH_JWT_ALG=${FLINT_BENCH_JWT_ALG:-ES256}
HOST=hello.bench.localhost
export PATH="$PATH:/usr/sbin"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${need[*]}: install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

BIN=$(cargo bench -p flint-runtime --bench gateway --no-run 2>&1 |
  sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -n1)
[ -x "$BIN" ] || { echo "could not build the bench binary" >&2; exit 1; }
MEASURE_START=$SECONDS

WORK=$(mktemp -d /tmp/flint-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  exit 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system, in clock ticks) of a process and its children.
ticks() {
  local s=0 p
  for p in "$1" $(pgrep -P "$1" || true); do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$s"
}
HZ=$(getconf CLK_TCK)

APP=$(free_port); NGINX=$(free_port); GW=$(free_port)
"$BIN" app "127.0.0.1:$APP" & APP_PID=$!; PIDS+=($APP_PID)
wait_port "$APP"
sed -e "s#@DIR@#$WORK#g" -e "s#@PORT@#$NGINX#g" -e "s#@APP@#127.0.0.1:$APP#g" \
  bench/gateway/nginx.conf >"$WORK/nginx.conf"
nginx -c "$WORK/nginx.conf" -p "$WORK" & NGINX_PID=$!; PIDS+=($NGINX_PID)
GW_ARGS=("127.0.0.1:$GW" "127.0.0.1:$APP")
if [ "$AUTH" = 1 ]; then
  # The gateway makes the API keys and the token, and writes the
  # Authorization values clients send to $WORK/auth before it listens.
  mkdir "$WORK/auth"
  GW_ARGS+=("$WORK/auth")
  if [ "$FLINT_BENCH_JWT_ALG" = RS256 ]; then
    # ring cannot generate RSA keys: a fresh 2048-bit one, PKCS#1 DER.
    openssl genrsa -traditional 2048 2>/dev/null |
      openssl rsa -traditional -outform DER -out "$WORK/auth/rsa.der" 2>/dev/null
    export FLINT_BENCH_JWT_RSA_KEY="$WORK/auth/rsa.der"
  fi
fi
"$BIN" gateway "${GW_ARGS[@]}" & GW_PID=$!; PIDS+=($GW_PID)
EXTRA_ROUTES=${FLINT_BENCH_ROUTES:-0}
if [ "$EXTRA_ROUTES" -gt 0 ]; then
  GW_MANY=$(free_port)
  FLINT_BENCH_EXTRA_ROUTES=$EXTRA_ROUTES "$BIN" gateway "127.0.0.1:$GW_MANY" "127.0.0.1:$APP" &
  GW_MANY_PID=$!; PIDS+=($GW_MANY_PID)
  wait_port "$GW_MANY"
fi
wait_port "$NGINX"; wait_port "$GW"
sleep 1
IDLE_START=$(rss_kib "$GW_PID")

# wrk latency as microseconds: "412.00us", "1.23ms", "1.01s".
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v+0} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else {sub(/s$/,"",v); print v*1000000}}'; }

# The machine is shared and noisy: targets take turns, ROUNDS times, and
# each figure is the median over the rounds.
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A RPS P50 P99 FP50 FP99 FP999 ERR CPU LATE
declare -A OWNER=([direct]=$APP_PID [nginx]=$NGINX_PID [gateway]=$GW_PID)
TARGETS=(direct nginx gateway)
declare -A PORT=([direct]=$APP [nginx]=$NGINX [gateway]=$GW)
# Each target's Host, and its Authorization value (none for most).
declare -A HOSTOF=([direct]=$HOST [nginx]=$HOST [gateway]=$HOST)
declare -A AUTHZ=()
if [ "$AUTH" = 1 ]; then
  TARGETS+=(gateway-key gateway-jwt)
  PORT[gateway-key]=$GW; OWNER[gateway-key]=$GW_PID; HOSTOF[gateway-key]=key.bench.localhost
  PORT[gateway-jwt]=$GW; OWNER[gateway-jwt]=$GW_PID; HOSTOF[gateway-jwt]=jwt.bench.localhost
  AUTHZ[gateway-key]=$(cat "$WORK/auth/api-key")
  AUTHZ[gateway-jwt]=$(cat "$WORK/auth/jwt")
fi
if [ "$EXTRA_ROUTES" -gt 0 ]; then
  TARGETS+=(gateway-routes)
  PORT[gateway-routes]=$GW_MANY; OWNER[gateway-routes]=$GW_MANY_PID; HOSTOF[gateway-routes]=$HOST
fi
# FLINT_BENCH_FLOOR=1 adds the `floor` role: the least a tokio HTTP/1.1
# proxy does per request (bench/gateway/floor.rs), not a product.
if [ "${FLINT_BENCH_FLOOR:-0}" = 1 ]; then
  FLOOR=$(free_port)
  "$BIN" floor "127.0.0.1:$FLOOR" "127.0.0.1:$APP" & FLOOR_PID=$!; PIDS+=($FLOOR_PID)
  wait_port "$FLOOR"
  TARGETS+=(floor); PORT[floor]=$FLOOR; OWNER[floor]=$FLOOR_PID; HOSTOF[floor]=$HOST
fi
# wrk's header arguments for target $1, in WRK_H.
wrk_headers() {
  WRK_H=(-H "Host: ${HOSTOF[$1]}")
  if [ -n "${AUTHZ[$1]:-}" ]; then WRK_H+=(-H "Authorization: ${AUTHZ[$1]}"); fi
}
# Every target answers 200 to what it is sent; the auth targets refuse a
# request without the credential (so the gate is really in the path).
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
for t in "${TARGETS[@]}"; do
  wrk_headers "$t"
  code=$(status_of "${WRK_H[@]}" "http://127.0.0.1:${PORT[$t]}/")
  [ "$code" = 200 ] || { echo "$t answers $code, not 200" >&2; exit 1; }
  if [ -n "${AUTHZ[$t]:-}" ]; then
    code=$(status_of -H "Host: ${HOSTOF[$t]}" "http://127.0.0.1:${PORT[$t]}/")
    [ "$code" = 401 ] || { echo "$t answers $code without a credential, not 401" >&2; exit 1; }
  fi
done
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)"
echo "wrk: $CONNS connections, 2 threads, ${SECONDS_EACH}s per target and round, $ROUNDS rounds, after a 2s warm-up"
if [ "$AUTH" = 1 ]; then
  echo "auth: gateway-key sends an API key (Authorization: Bearer, 4 keys accepted), gateway-jwt a $FLINT_BENCH_JWT_ALG token (key set from a JWKS document, a required scope claim); same gateway process as gateway"
fi
for t in "${TARGETS[@]}"; do
  wrk_headers "$t"
  wrk -t2 -c"$CONNS" -d2s "${WRK_H[@]}" "http://127.0.0.1:${PORT[$t]}/" >/dev/null
done
for r in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    wrk_headers "$t"
    t0=$(ticks "${OWNER[$t]}")
    out=$(wrk -t2 -c"$CONNS" -d"${SECONDS_EACH}s" --latency "${WRK_H[@]}" "http://127.0.0.1:${PORT[$t]}/")
    t1=$(ticks "${OWNER[$t]}")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    # CPU µs per request of the process answering (the app for direct, the
    # proxy otherwise): steadier than req/s on a shared machine.
    CPU[$t]="${CPU[$t]:-} $(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$HZ" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')"
    RPS[$t]="${RPS[$t]:-} $(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")"
    P50[$t]="${P50[$t]:-} $(awk '$1=="50%" {print $2}' <<<"$out" | to_us)"
    P99[$t]="${P99[$t]:-} $(awk '$1=="99%" {print $2}' <<<"$out" | to_us)"
    ERR[$t]="${ERR[$t]:-}$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')"
  done
done
echo "fixed rate: $RATE req/s over 16 connections, ${SECONDS_EACH}s per target and round after 1s warm-up"
for r in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    out=$("$BIN" rate "127.0.0.1:${PORT[$t]}" "${HOSTOF[$t]}" "$RATE" "$SECONDS_EACH" 16 \
      ${AUTHZ[$t]:+"Authorization: ${AUTHZ[$t]}"})
    FP50[$t]="${FP50[$t]:-} $(sed -n 's/.* p50=\([0-9]*\).*/\1/p' <<<"$out")"
    FP99[$t]="${FP99[$t]:-} $(sed -n 's/.* p99=\([0-9]*\).*/\1/p' <<<"$out")"
    FP999[$t]="${FP999[$t]:-} $(sed -n 's/.* p999=\([0-9]*\).*/\1/p' <<<"$out")"
    ERR[$t]="${ERR[$t]:-}$(sed -n 's/.*errors=\([1-9][0-9]*\).*/rate errors=\1 /p' <<<"$out")"
    LATE[$t]="${LATE[$t]:-} $(sed -n 's/.* late=\([0-9]*\).*/\1/p' <<<"$out")"
  done
done
# The gateway's requests/s over nginx's within each round: the two ran
# back to back, so this ratio drifts less with the machine's load than the
# ratio of the medians.
# Two per-round lists side by side, one round a line.
rounds() { paste -d' ' <(tr ' ' '\n' <<<"$1" | grep -v '^$') <(tr ' ' '\n' <<<"$2" | grep -v '^$'); }
ROUND_RATIOS=$(rounds "${RPS[gateway]}" "${RPS[nginx]}" | awk '{printf "%.2f ", $1 / $2}')
# The auth targets against the plain gateway within each round (they ran
# back to back): CPU added per request (µs and %) and the requests/s ratio.
declare -A ADD_US ADD_PCT RPS_RATIO
for t in gateway-key gateway-jwt; do
  [ -n "${CPU[$t]:-}" ] || continue
  ADD_US[$t]=$(rounds "${CPU[gateway]}" "${CPU[$t]}" | awk '{printf "%.1f ", $2 - $1}')
  ADD_PCT[$t]=$(rounds "${CPU[gateway]}" "${CPU[$t]}" | awk '{printf "%.1f ", ($2 - $1) / $1 * 100}')
  RPS_RATIO[$t]=$(rounds "${RPS[$t]}" "${RPS[gateway]}" | awk '{printf "%.3f ", $1 / $2}')
done
declare -A RPS_ROUNDS
for t in "${TARGETS[@]}"; do RPS_ROUNDS[$t]=${RPS[$t]}; done
echo "raw per round:"
for t in "${TARGETS[@]}"; do
  echo "  $t: wrk req/s${RPS[$t]}; wrk p99${P99[$t]}; CPU µs/req${CPU[$t]}; $RATE/s p50${FP50[$t]}; $RATE/s p99${FP99[$t]}; sent >2 ms late${LATE[$t]}"
  for v in RPS P50 P99 FP50 FP99 FP999; do
    declare -n ref=$v
    ref[$t]=$(median <<<"${ref[$t]}")
    unset -n ref
  done
done
sleep 1
IDLE_AFTER=$(rss_kib "$GW_PID")

echo
echo "| target | wrk req/s | vs nginx | wrk p50 µs | wrk p99 µs | CPU µs/req | ${RATE}/s p50 µs | ${RATE}/s p99 µs | ${RATE}/s p99.9 µs | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for t in "${TARGETS[@]}"; do
  ratio=$(awk -v a="${RPS[$t]}" -v b="${RPS[nginx]}" 'BEGIN {printf "%.2f", a/b}')
  echo "| $t | ${RPS[$t]} | $ratio | ${P50[$t]} | ${P99[$t]} | $(median <<<"${CPU[$t]}") | ${FP50[$t]} | ${FP99[$t]} | ${FP999[$t]} | ${ERR[$t]:-0} |"
done
echo
echo "gateway/nginx requests/s per round: $ROUND_RATIOS(median $(median <<<"$ROUND_RATIOS"))"
for t in nginx gateway gateway-key gateway-jwt; do
  [ -n "${FP50[$t]:-}" ] || continue
  echo "$t adds at ${RATE}/s: p50 $((FP50[$t] - FP50[direct])) µs, p99 $((FP99[$t] - FP99[direct])) µs"
done
echo "gateway RSS idle: $IDLE_START KiB after start, $IDLE_AFTER KiB after the load"
if [ "$AUTH" = 1 ]; then
  echo
  echo "auth over the plain gateway target (same process; per round, then the median of the rounds):"
  cpu0=$(median <<<"${CPU[gateway]}")
  for t in gateway-key gateway-jwt; do
    cpu1=$(median <<<"${CPU[$t]}")
    echo "  $t: CPU µs/req $cpu1 against $cpu0: $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%+.1f µs (%+.1f %%)", b - a, (b - a) / a * 100}') by the medians;" \
      "per round ${ADD_US[$t]}µs, ${ADD_PCT[$t]}% (median $(median <<<"${ADD_PCT[$t]}") %)"
    echo "  $t: requests/s ${RPS[$t]} against ${RPS[gateway]} ($(awk -v a="${RPS[gateway]}" -v b="${RPS[$t]}" 'BEGIN {printf "%.3f", b / a}')×);" \
      "per round ${RPS_RATIO[$t]}(median $(median <<<"${RPS_RATIO[$t]}")×)"
    echo "  $t at ${RATE}/s: p50 ${FP50[$t]} µs, p99 ${FP99[$t]} µs (plain gateway ${FP50[gateway]} and ${FP99[gateway]} µs)"
  done
fi
if [ "$EXTRA_ROUTES" -gt 0 ]; then
  MANY_RATIO=$(rounds "${RPS_ROUNDS[gateway-routes]}" "${RPS_ROUNDS[gateway]}" | awk '{printf "%.3f ", $1 / $2}')
  MANY_CPU=$(rounds "${CPU[gateway]}" "${CPU[gateway-routes]}" | awk '{printf "%+.1f ", ($2 - $1) / $1 * 100}')
  echo
  echo "gateway-routes ($EXTRA_ROUTES idle routes more) over gateway (same rounds, back to back):"
  echo "  requests/s ${RPS[gateway-routes]} against ${RPS[gateway]}; per round ${MANY_RATIO}(median $(median <<<"$MANY_RATIO")×)"
  echo "  CPU µs/req per round ${MANY_CPU}% (median $(median <<<"$MANY_CPU") %)"
fi
BAD=""
for t in "${TARGETS[@]}"; do [ -z "${ERR[$t]:-}" ] || BAD+=" $t"; done
if [ -n "$BAD" ]; then
  echo "NOT every response was 2xx:$BAD (see the errors column)"
else
  echo "every response a success: each target answered 200 before the rounds; wrk counted no 4xx/5xx and no socket errors, rate no answer but 2xx"
fi
echo "measuring took $((SECONDS - MEASURE_START)) s (after the build)"
