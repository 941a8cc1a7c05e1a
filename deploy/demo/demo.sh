#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# `make demo`: a small system on loopback, traced by `wirespan agent` and
# shown by `wirespan tail`:
#
#   curl (JWT | X-API-Key) -> caddy (gateway) -> demo-api (Go, net/http)
#     -> NATS request demo.price -> demo-worker (Go)
#          -> publishes demo.priced -> notifier (Node, nats.js)
#
# Nothing in the demo knows about tracing. Every process gets its own free
# loopback port and its own nats-server; the agent only looks at those
# ports, so the traces are the demo's even on a busy host.
#
# usage: sudo deploy/demo/demo.sh [--once] [--json] [--calls N]
#   --once     make the calls, print the traces, stop (default: keep running
#              until Ctrl-C, so you can make your own calls)
#   --json     `wirespan tail --json` (one JSON object per span) on stdout
#   --calls N  calls of each kind (JWT, API key) to make (default 1)
# Environment: WIRESPAN (binary, default build/wirespan), KEEP_DIR=1 keeps
# the run's directory (logs of every process).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WIRESPAN="${WIRESPAN:-$ROOT/build/wirespan}"
BIN="$ROOT/build/demo"
once=0 json=0 calls=1
while [ $# -gt 0 ]; do
	case "$1" in
	--once) once=1 ;;
	--json) json=1 ;;
	--calls) calls="${2:?--calls needs a number}"; shift ;;
	-h | --help) sed -n '3,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "the agent needs root (or its capabilities): sudo make demo"
[ -x "$WIRESPAN" ] || die "$WIRESPAN is missing: make"
for t in nats-server caddy go node curl openssl python3; do
	command -v "$t" >/dev/null || die "$t is missing: sudo make deps"
done
NODE_PATH="$ROOT/tests/node_modules"
[ -d "$NODE_PATH/nats" ] || die "npm package nats is missing: sudo make deps"
export NODE_PATH

# The Go programs: nats.go from Debian (golang-github-nats-io-go-nats-dev),
# built offline.
mkdir -p "$BIN"
for p in api worker; do
	if [ ! -x "$BIN/demo-$p" ] || [ "$ROOT/deploy/demo/$p/main.go" -nt "$BIN/demo-$p" ]; then
		say "building demo-$p"
		(cd "$ROOT/deploy/demo/$p" &&
			GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-$ROOT/build/gocache}" \
				go build -o "$BIN/demo-$p" .)
	fi
done

DIR="$(mktemp -d /tmp/wirespan-demo.XXXXXX)"
pids=()
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	# children first (newest first), each by its pid, then wait for them
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p="${pids[i]}"
		kill -TERM "$p" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [ "${KEEP_DIR:-}" = 1 ] || [ "$rc" != 0 ]; then
		say "logs kept in $DIR"
	else
		rm -rf "$DIR"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # port name pid
	for _ in $(seq 100); do
		kill -0 "$3" 2>/dev/null || die "$2 exited; its log: $DIR/$2.log"
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "$2 does not listen on 127.0.0.1:$1; its log: $DIR/$2.log"
}
wait_line() { # file pattern name pid
	for _ in $(seq 300); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		kill -0 "$4" 2>/dev/null || die "$3 exited: $(tail -n 3 "$1")"
		sleep 0.1
	done
	die "$3 is not ready after 30 s: $(tail -n 3 "$1")"
}

NATS_PORT="$(free_port)" GW_PORT="$(free_port)" API_PORT="$(free_port)"
NATS_URL="nats://127.0.0.1:$NATS_PORT"

nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$DIR/nats-server.log" 2>&1 &
pids+=($!)
wait_port "$NATS_PORT" nats-server $!

# The agent: only the demo's ports; spans are published on the demo's NATS
# quickly (200 ms batches); a process span with no later evidence ends
# after 2 s (the notifier's last message has no next read to end it).
"$WIRESPAN" agent --nats-url "$NATS_URL" --node demo --no-k8s \
	--port "$NATS_PORT" --port "$GW_PORT" --port "$API_PORT" \
	--route '/orders/{id}' --process-timeout 2 \
	--key-hash-secret-file "$DIR/key-hash.secret" \
	--service-rule "gateway=exe:caddy" --service-rule "orders-api=exe:demo-api" \
	--service-rule "pricing-worker=exe:demo-worker" --service-rule "notifier=exe:node" \
	--service-rule "nats=exe:nats-server" --service-rule "caller=exe:curl" \
	--set export.batch.max_delay_ms=200 >"$DIR/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
wait_line "$DIR/agent.log" ready agent "$agent"

tail_args=(--nats-url "$NATS_URL" --flush-after 3000)
[ "$json" = 1 ] && tail_args+=(--json)
"$WIRESPAN" tail "${tail_args[@]}" 2>"$DIR/tail.log" &
tailpid=$!
pids+=("$tailpid")
wait_line "$DIR/tail.log" ready tail "$tailpid"

"$BIN/demo-worker" --nats "$NATS_URL" >"$DIR/demo-worker.log" 2>&1 &
pids+=($!)
wait_line "$DIR/demo-worker.log" answering demo-worker $!
node "$ROOT/deploy/demo/notifier.js" "$NATS_URL" >"$DIR/notifier.log" 2>&1 &
pids+=($!)
wait_line "$DIR/notifier.log" listening notifier $!
"$BIN/demo-api" --listen "127.0.0.1:$API_PORT" --nats "$NATS_URL" >"$DIR/demo-api.log" 2>&1 &
pids+=($!)
wait_port "$API_PORT" demo-api $!
sed -e "s|@LISTEN_PORT@|$GW_PORT|" -e "s|@BACKEND_PORT@|$API_PORT|" -e "s|@DIR@|$DIR|" \
	"$ROOT/deploy/demo/Caddyfile.tmpl" >"$DIR/Caddyfile"
HOME="$DIR" XDG_DATA_HOME="$DIR/xdg-data" XDG_CONFIG_HOME="$DIR/xdg-config" \
	caddy run --config "$DIR/Caddyfile" --adapter caddyfile >"$DIR/caddy.out" 2>&1 &
pids+=($!)
wait_port "$GW_PORT" caddy $!

# A JWT as an identity provider would issue it (HS256 with a demo secret;
# the agent decodes the claims and never verifies or records the token).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
jwt_for() { # sub
	local h p s
	h="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)"
	p="$(printf '{"sub":"%s","iss":"https://id.demo.example","scope":"orders:read","iat":%s}' "$1" "$(date +%s)" | b64url)"
	s="$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac demo-secret -binary | b64url)"
	printf '%s.%s.%s' "$h" "$p" "$s"
}
GW="http://127.0.0.1:$GW_PORT"
JWT="$(jwt_for alice)"
API_KEY="demo-key-$(openssl rand -hex 8)"

call() { # what curl-args...
	local what="$1"
	shift
	say "$what: $(curl -sS --max-time 5 "$@")"
}
say "gateway $GW, NATS $NATS_URL, logs in $DIR"
for i in $(seq "$calls"); do
	call "JWT caller (alice)" -H "Authorization: Bearer $JWT" "$GW/orders/$((1000 + i))"
	sleep 0.3
	call "API-key caller" -H "X-API-Key: $API_KEY" "$GW/orders/$((2000 + i))"
	sleep 0.3
done

if [ "$once" = 1 ]; then
	# the last process span ends after --process-timeout, its batch after
	# 200 ms, its trace is printed --flush-after later: then stop tail,
	# which prints what it still holds
	sleep 6
	kill -INT "$tailpid"
	wait "$tailpid" || true
	exit 0
fi
say "traces appear above as calls complete; try your own:"
say "  curl -H 'Authorization: Bearer $JWT' $GW/orders/42"
say "  curl -H 'X-API-Key: $API_KEY' $GW/orders/43"
say "Ctrl-C stops everything"
wait "$tailpid"
