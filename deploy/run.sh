#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# `sudo make run`: from a fresh Debian 12 machine to live spans.
#   1. installs the Debian and npm packages wirespan needs (.ci/deps) and
#      builds build/wirespan;
#   2. reads the effective config (/etc/wirespan/wirespan.yaml if present,
#      WIRESPAN_* variables) and, when no NATS server answers on its first
#      URL and that URL is on this host, starts a nats-server there;
#   3. runs `wirespan agent` with that config (spans published over NATS)
#      and shows them with `wirespan tail` in the terminal.
# Ctrl-C stops tail, then the agent (which prints its counters), then the
# nats-server it started, each by its pid.
#
# Environment: RUN_SKIP_DEPS=1 skips step 1's package check, TAIL_ARGS extra
# `wirespan tail` flags (e.g. credentials: --creds FILE; --json),
# AGENT_ARGS extra `wirespan agent` flags.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
W="$ROOT/build/wirespan"
say() { printf 'run: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "the agent needs root (or its capabilities): sudo make run"
cd "$ROOT"
if [ "${RUN_SKIP_DEPS:-}" != 1 ]; then
	bash .ci/deps
fi
make -s -j2 build/wirespan

# The first server URL of the effective config.
url="$("$W" agent --check-config ${AGENT_ARGS:-} 2>/dev/null |
	sed -n 's/^export\.nats\.urls: "\{0,1\}\([^",]*\).*/\1/p')"
[ -n "$url" ] || die "cannot read export.nats.urls: $W agent --check-config"
hostport="${url#*://}"
hostport="${hostport##*@}"
host="${hostport%:*}" port="${hostport##*:}"
[ "$host" != "$hostport" ] || port=4222
case "$port" in '' | *[!0-9]*) die "cannot parse the port of $url" ;; esac

DIR="$(mktemp -d /tmp/wirespan-run.XXXXXX)"
nats_pid="" agent_pid=""
stop() { # pid name
	[ -n "$1" ] || return 0
	kill -INT "$1" 2>/dev/null || return 0
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null && say "$2 did not stop in 10 s: killed"
	wait "$1" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop "$agent_pid" agent
	stop "$nats_pid" nats-server
	[ -n "$agent_pid" ] && grep -h 'agent_metrics' "$DIR/agent.log" >&2 || true
	say "logs in $DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
if reachable "$host" "$port"; then
	say "NATS server at $url answers: using it"
else
	case "$host" in
	127.* | localhost | ::1 | "[::1]") ;;
	*) die "no NATS server answers at $url, and it is not on this host: start one, or set export.nats.urls (docs/CONFIGURATION.md)" ;;
	esac
	command -v nats-server >/dev/null || die "nats-server is missing: sudo make deps"
	say "no NATS server at $url: starting nats-server on $host:$port"
	# its own session: Ctrl-C reaches tail, and we stop the rest in order
	setsid nats-server -a "${host//[\[\]]/}" -p "$port" >"$DIR/nats-server.log" 2>&1 &
	nats_pid=$!
	for _ in $(seq 100); do reachable "$host" "$port" && break; sleep 0.1; done
	reachable "$host" "$port" || die "nats-server did not start: $(tail -n 3 "$DIR/nats-server.log")"
fi

# shellcheck disable=SC2086
setsid "$W" agent ${AGENT_ARGS:-} >"$DIR/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 300); do
	grep -q ready "$DIR/agent.log" && break
	kill -0 "$agent_pid" 2>/dev/null || die "the agent stopped: $(tail -n 5 "$DIR/agent.log")"
	sleep 0.1
done
grep -q ready "$DIR/agent.log" || die "the agent is not ready after 30 s: $(tail -n 5 "$DIR/agent.log")"
say "agent ready (log: $DIR/agent.log); traces of this host follow, Ctrl-C stops"
# tail in the foreground: Ctrl-C stops it (it prints what it holds), then
# the EXIT trap stops the agent and the server. Without TAIL_ARGS, tail ends
# with status 0 only when a signal stopped it: that is a Ctrl-C (130), even
# when bash itself did not run its INT trap first.
# shellcheck disable=SC2086
"$W" tail --nats-url "$url" ${TAIL_ARGS:-}
rc=$?
[ "$rc" = 0 ] && [ -z "${TAIL_ARGS:-}" ] && rc=130
exit "$rc"
