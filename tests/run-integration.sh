#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the integration-test peers into build/peers/ and run the capture
# integration tests (tests/integration/run.py; root needed for BPF).
#   bash tests/run-integration.sh [-v] [TEST ...]
# Needs: golang-go + golang-github-nats-io-go-nats-dev, libnats-dev, a C
# compiler, node + npm, nats-server, caddy, nginx, curl, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/build/peers"
PYTHON="${PYTHON:-/usr/bin/python3}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
mkdir -p "$OUT"

# Go peer (nats.go from Debian's golang-github-nats-io-go-nats-dev, offline).
if [ ! -x "$OUT/natsclient-go" ] || [ "$ROOT/tests/peers/go/natsclient.go" -nt "$OUT/natsclient-go" ]; then
	echo "  GO       build/peers/natsclient-go"
	(cd "$ROOT/tests/peers/go" &&
		GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-$ROOT/build/gocache}" \
			go build -o "$OUT/natsclient-go" natsclient.go)
fi

# C peer (nats.c from Debian's libnats-dev).
if [ ! -x "$OUT/natsclient-c" ] || [ "$ROOT/tests/peers/c/natsclient.c" -nt "$OUT/natsclient-c" ]; then
	echo "  CC       build/peers/natsclient-c"
	"${CC:-cc}" -std=c11 -Wall -Wextra -Werror -O2 -g \
		"$ROOT/tests/peers/c/natsclient.c" -lnats -o "$OUT/natsclient-c"
fi

# Role peers for the agent tests (one process per role): nats.go and nats.c.
if [ ! -x "$OUT/natsrole-go" ] || [ "$ROOT/tests/peers/go/natsrole/natsrole.go" -nt "$OUT/natsrole-go" ]; then
	echo "  GO       build/peers/natsrole-go"
	(cd "$ROOT/tests/peers/go/natsrole" &&
		GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-$ROOT/build/gocache}" \
			go build -o "$OUT/natsrole-go" natsrole.go)
fi
# JWT/creds maker for the credential-rotation test (nats-io/nkeys, offline).
if [ ! -x "$OUT/natsjwt" ] || [ "$ROOT/tests/peers/go/natsjwt/natsjwt.go" -nt "$OUT/natsjwt" ]; then
	echo "  GO       build/peers/natsjwt"
	(cd "$ROOT/tests/peers/go/natsjwt" &&
		GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-$ROOT/build/gocache}" \
			go build -o "$OUT/natsjwt" natsjwt.go)
fi
if [ ! -x "$OUT/natsrole-c" ] || [ "$ROOT/tests/peers/c/natsrole.c" -nt "$OUT/natsrole-c" ]; then
	echo "  CC       build/peers/natsrole-c"
	"${CC:-cc}" -std=c11 -Wall -Wextra -Werror -O2 -g \
		"$ROOT/tests/peers/c/natsrole.c" -lnats -o "$OUT/natsrole-c"
fi

# Node peer's dependency (the `nats` npm package, pinned by tests/package-lock.json).
if [ ! -d "$ROOT/tests/node_modules/nats" ]; then
	echo "  NPM      tests/node_modules"
	npm ci --prefix "$ROOT/tests" --no-audit --no-fund >/dev/null
fi

exec "$PYTHON" "$ROOT/tests/integration/run.py" "$@"
