#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# HTTP part of `make bench` (part 5 of tests/bench/run.sh; also runs alone:
# `sudo bash tests/bench/http_bench.sh`). Prints a markdown section.
#
#  a. The HTTP/1.x parser alone (tests/bench/bench_http_parser.c, cc -O2) on
#     typical gateway messages: MB/s per case, median of HTTP_PARSER_REPS.
#  c. JWT verification (tests/bench/bench_jwt.c): CPU ns per token, full
#     verification and with the agent's verdict cache warm (run first).
#  b. A gateway at full speed: wrk -t2 -c64 for HTTP_SECONDS against nginx
#     (proxy_pass) and caddy (reverse_proxy), both in front of an nginx
#     backend (`return 200`), all on loopback. HTTP_REPS runs without the
#     agent and HTTP_REPS with `wirespan agent --output stdout --port FRONT
#     --port BACK` (spans to /dev/null), alternating. Reported: requests/s
#     (median), the ratio with/without, and the agent's counters: spans out,
#     HTTP exchanges against wrk's requests, and every loss counter (ring
#     buffer, gaps, evictions, drops). Between them, the same load under
#     empty programs on the same tracepoints (build/bench/bpf_floor) and
#     under `wirespan capture --summary`: what the floor, the capture and the
#     agent's userspace each cost the gateway.
#
# Knobs: HTTP_SECONDS (5; QUICK=1: 3), HTTP_REPS (3; QUICK=1: 2),
# HTTP_PARSER_REPS (5; QUICK=1: 3), HTTP_GATEWAYS ("nginx caddy").

set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
WS=$ROOT/build/wirespan
OUT=$ROOT/build/bench/http
QUICK=${QUICK:-0}
HTTP_SECONDS=${HTTP_SECONDS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
HTTP_REPS=${HTTP_REPS:-$([ "$QUICK" = 1 ] && echo 2 || echo 3)}
HTTP_PARSER_REPS=${HTTP_PARSER_REPS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
HTTP_GATEWAYS=${HTTP_GATEWAYS:-"nginx caddy"}

log() { echo "http-bench: $*" >&2; }
die() {
	log "$*"
	exit 1
}
[ "$(id -u)" = 0 ] || die "needs root (BPF)"
for t in wrk nginx caddy jq; do command -v "$t" >/dev/null || die "$t not found"; done
[ -x "$WS" ] || die "$WS not built (make)"
FLOOR=$ROOT/build/bench/bpf_floor
[ -x "$FLOOR" ] || die "$FLOOR not built (make)"
rm -rf "$OUT" && mkdir -p "$OUT" || die "cannot create $OUT"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port
	local i
	for i in $(seq 1 100); do
		(echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listens on port $1"
}

median() { sort -n | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }

# ---- a. the parser -----------------------------------------------------------

log "a: HTTP parser alone ($HTTP_PARSER_REPS runs)"
cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Iagent tests/bench/bench_http_parser.c \
	agent/proto/http.c -o "$OUT/bench_http_parser" 2>"$OUT/cc.err" ||
	{ cat "$OUT/cc.err" >&2; die "cannot build bench_http_parser"; }
for i in $(seq 1 "$HTTP_PARSER_REPS"); do
	"$OUT/bench_http_parser" 1 >"$OUT/parser.$i.txt" || die "bench_http_parser failed"
done

# ---- c. JWT verification ------------------------------------------------------
# (run before the gateways: no load of ours on the machine yet)

log "c: JWT verification (RS256 and EdDSA, keys and tokens made with openssl)"
cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Iagent tests/bench/bench_jwt.c agent/jwks.c \
	-ljson-c -lcrypto -o "$OUT/bench_jwt" 2>"$OUT/cc-jwt.err" ||
	{ cat "$OUT/cc-jwt.err" >&2; die "cannot build bench_jwt"; }
J=$OUT/jwt
mkdir -p "$J"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$J/rsa.pem" 2>/dev/null &&
	openssl genpkey -algorithm ED25519 -out "$J/ed.pem" 2>/dev/null || die "openssl genpkey failed"
python3 - "$J" <<'PY' || die "cannot make the JWKS and tokens"
import base64, json, subprocess, sys, time
d = sys.argv[1]
b64u = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
mod = subprocess.run(["openssl", "rsa", "-in", d + "/rsa.pem", "-noout", "-modulus"], capture_output=True, text=True, check=True).stdout
n = int(mod.strip().split("=", 1)[1], 16)
der = subprocess.run(["openssl", "pkey", "-in", d + "/ed.pem", "-pubout", "-outform", "DER"], capture_output=True, check=True).stdout
keys = [{"kty": "RSA", "kid": "r", "n": b64u(n.to_bytes(256, "big")), "e": "AQAB"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": b64u(der[-32:])}]
open(d + "/jwks.json", "w").write(json.dumps({"keys": keys}))
claims = b64u(json.dumps({"sub": "bench", "iss": "https://idp", "exp": int(time.time()) + 3600, "scope": "read write"}).encode())
for alg, kid, cmd in (("RS256", "r", ["openssl", "dgst", "-sha256", "-sign", d + "/rsa.pem"]),
                      ("EdDSA", "e", ["openssl", "pkeyutl", "-sign", "-inkey", d + "/ed.pem", "-rawin", "-in", d + "/in"])):
    data = b64u(json.dumps({"alg": alg, "kid": kid}).encode()) + "." + claims
    open(d + "/in", "w").write(data)
    sig = subprocess.run(cmd, input=data.encode(), capture_output=True, check=True).stdout
    open(d + "/" + alg + ".jwt", "w").write(data + "." + b64u(sig))
PY
for alg in RS256 EdDSA; do
	"$OUT/bench_jwt" "$J/jwks.json" "$J/$alg.jwt" 2000 >"$OUT/jwt.$alg.txt" || die "bench_jwt $alg failed"
done

# ---- b. gateways under wrk ---------------------------------------------------

BACK=$(free_port)
FRONT=$(free_port)
mkdir -p "$OUT/back" "$OUT/front"
nginx_conf() { # dir port body
	cat >"$1/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
user root;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $1/cb; proxy_temp_path $1/pt; fastcgi_temp_path $1/ft;
	uwsgi_temp_path $1/ut; scgi_temp_path $1/st;
	sendfile off;
	upstream backend { server 127.0.0.1:$BACK; keepalive 64; }
	server { listen 127.0.0.1:$2; location / { $3 } }
}
EOF
}
nginx_conf "$OUT/back" "$BACK" 'return 200 "wirespan bench body\n";'
nginx -p "$OUT/back" -c "$OUT/back/nginx.conf" -e "$OUT/back/error.log" &
PIDS+=($!)
wait_port "$BACK"

start_gateway() { # kind
	if [ "$1" = nginx ]; then
		nginx_conf "$OUT/front" "$FRONT" 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
		nginx -p "$OUT/front" -c "$OUT/front/nginx.conf" -e "$OUT/front/error.log" &
	else
		cat >"$OUT/front/Caddyfile" <<EOF
{
	admin off
	auto_https off
	storage file_system $OUT/front/caddy-data
	log {
		output discard
	}
}
http://127.0.0.1:$FRONT {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$BACK
}
EOF
		HOME=$OUT/front XDG_DATA_HOME=$OUT/front XDG_CONFIG_HOME=$OUT/front \
			caddy run --config "$OUT/front/Caddyfile" --adapter caddyfile >"$OUT/front/caddy.log" 2>&1 &
	fi
	GW=$!
	PIDS+=("$GW")
	wait_port "$FRONT"
}

wrk_run() { # name
	wrk -t2 -c64 -d"${HTTP_SECONDS}s" "http://127.0.0.1:$FRONT/" >"$OUT/$1.wrk" 2>&1
	awk '/Requests\/sec/ {print $2}' "$OUT/$1.wrk"
}

# wrk_under KIND CMD...: the same wrk run with CMD running (stdout to
# /dev/null, stderr to $gw-KIND-$r.err, "ready" awaited); its req/s go to
# $gw.KIND, its exit status after SIGINT to $gw-KIND-$r.rc.
wrk_under() {
	local kind=$1 bg i
	shift
	log "b: $gw run $r under $kind: $*"
	"$@" >/dev/null 2>"$OUT/$gw-$kind-$r.err" &
	bg=$!
	for i in $(seq 1 100); do grep -q ready "$OUT/$gw-$kind-$r.err" && break; sleep 0.1; done
	wrk_run "$gw-$kind-$r" >>"$OUT/$gw.$kind"
	sleep 1 # what the run left in flight reaches the agent
	kill -INT "$bg"
	wait "$bg"
	echo $? >"$OUT/$gw-$kind-$r.rc"
}

for gw in $HTTP_GATEWAYS; do
	start_gateway "$gw"
	wrk -t2 -c64 -d1s "http://127.0.0.1:$FRONT/" >/dev/null 2>&1 # warm up
	for r in $(seq 1 "$HTTP_REPS"); do
		log "b: $gw run $r without the agent"
		wrk_run "$gw-off-$r" >>"$OUT/$gw.off"
		# the same load under the floor (empty programs on the same
		# tracepoints) and under the capture alone (BPF + a reader that
		# only counts): where the agent's cost comes from
		wrk_under floor "$FLOOR"
		wrk_under cap "$WS" capture --summary --port "$FRONT" --port "$BACK"
		wrk_under on "$WS" agent --output stdout --port "$FRONT" --port "$BACK" \
			--key-hash-secret-file "$OUT/secret"
	done
	kill "$GW" 2>/dev/null
	wait "$GW" 2>/dev/null
	sleep 0.5
done

# ---- report ------------------------------------------------------------------

echo "### 5. HTTP: parser and gateways under wrk"
echo
echo "Parser alone (tests/bench/bench_http_parser.c, 16 KiB feeds, MB/s of wire bytes per CPU second, median of $HTTP_PARSER_REPS runs):"
echo
echo "| case | MB/s (median) | min | max |"
echo "|---|---:|---:|---:|"
cases=$(grep -h 'MB/s' "$OUT/parser.1.txt" | sed 's/:.*//')
while IFS= read -r c; do
	[ -n "$c" ] || continue
	vals=$(grep -h -F "$c:" "$OUT"/parser.*.txt | sed -n 's/.*: *\([0-9.]*\) MB\/s.*/\1/p')
	echo "| $(echo "$c" | tr -s ' ') | $(echo "$vals" | median) | $(echo "$vals" | sort -n | head -1) | $(echo "$vals" | sort -n | tail -1) |"
done <<<"$cases"
echo
echo "JWT verification (tests/bench/bench_jwt.c, CPU ns per token, 2048-bit RSA and Ed25519 keys made by openssl): a full verification (signature, exp/nbf) and the agent's path with the verdict cache warm (SHA-256 of the token, one lookup)."
echo
echo "| alg | verify ns/token | cached ns/token |"
echo "|---|---:|---:|"
for alg in RS256 EdDSA; do
	echo "| $alg | $(awk '/^verify:/ {print $2}' "$OUT/jwt.$alg.txt") | $(awk '/^cached:/ {print $2}' "$OUT/jwt.$alg.txt") |"
done
echo
echo "Gateways: wrk -t2 -c64 for $HTTP_SECONDS s to the gateway, nginx backend (\`return 200\`), $HTTP_REPS runs each way, alternating."
echo "With the agent: \`wirespan agent --output stdout --port FRONT --port BACK\`, spans to /dev/null."
echo
echo "| gateway | req/s without (median) | req/s with agent (median) | with / without | wrk requests (with, sum) | exchanges: server (gateway + backend) / client (wrk + gateway) | spans out | rb_full_events | gap_bytes (user) | http gap_messages / orphan / evicted / dropped | agent exits |"
echo "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|"
for gw in $HTTP_GATEWAYS; do
	off=$(median <"$OUT/$gw.off")
	on=$(median <"$OUT/$gw.on")
	reqs=0
	for f in "$OUT/$gw"-on-*.wrk; do reqs=$((reqs + $(awk '/requests in/ {print $1}' "$f"))); done
	am=$(cat "$OUT/$gw"-on-*.err | grep '"type":"agent_metrics"' | jq -s '{spans: (map(.spans_out) | add), server: (map(.http.server) | add), client: (map(.http.client) | add), gapm: (map(.http.gap_messages) | add), orphan: (map(.http.orphan_responses) | add), ev: (map(.http.end_evicted + .http.pending_evicted) | add), drop: (map(.http.pending_dropped) | add)}')
	km=$(cat "$OUT/$gw"-on-*.err | grep '"type":"metrics"' | jq -s '{rb: (map(.kernel.rb_full_events) | add), gap: (map(.user.gap_bytes | add) | add)}')
	rcs=$(cat "$OUT/$gw"-on-*.rc | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')
	# each request is one server exchange on the gateway, one client
	# exchange on the gateway and one server exchange on the backend
	echo "| $gw | $off | $on | $(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.3f", b ? a / b : 0}') | $reqs | $(jq -r '"\(.server) / \(.client)"' <<<"$am") | $(jq -r .spans <<<"$am") | $(jq -r .rb <<<"$km") | $(jq -r .gap <<<"$km") | $(jq -r '"\(.gapm) / \(.orphan) / \(.ev) / \(.drop)"' <<<"$am") | exit $rcs|"
done
echo
echo "Each request is two server exchanges (gateway, backend) and two client exchanges (wrk, the gateway's upstream call): both columns should be twice wrk's count, plus the requests in flight when wrk stopped."
echo
echo "Where the cost comes from (same runs, alternating): req/s under empty programs on the same tracepoints (bpf/floor.bpf.c: the floor of a syscall-tracepoint design), under \`wirespan capture --summary\` (the BPF capture and a reader that only counts), and under the agent, each as a ratio to the runs without anything attached."
echo
echo "| gateway | without | floor programs | capture alone | agent |"
echo "|---|---:|---:|---:|---:|"
for gw in $HTTP_GATEWAYS; do
	off=$(median <"$OUT/$gw.off")
	row="| $gw | $off"
	for k in floor cap on; do
		v=$(median <"$OUT/$gw.$k")
		row="$row | $v ($(awk -v a="$v" -v b="$off" 'BEGIN {printf "%.3f", b ? a / b : 0}'))"
	done
	echo "$row |"
done
