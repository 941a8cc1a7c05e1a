#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# What one uprobe hit costs a Go program, at a function's entry and on the
# jbe of its stack check (where agent/gort.c puts the Go runtime probes,
# ws_go_probe_skip): a Go function called in a loop, timed without a probe,
# with a tracefs uprobe on its first instruction, and with one on the jbe.
# Root (tracefs). Prints a markdown table; GO_PROBE_CALLS (200000) calls per
# run. Run alone: sudo bash tests/bench/go_probe_cost.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
CALLS=${GO_PROBE_CALLS:-200000}
TRACE=/sys/kernel/tracing
GROUP=wsgocost$$
die() {
	echo "go-probe-cost: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || die "needs root (tracefs)"
command -v go >/dev/null || die "go not found"
[ -w "$TRACE/uprobe_events" ] || die "$TRACE/uprobe_events not writable"
DIR=$(mktemp -d)
cleanup() {
	[ -d "$TRACE/instances/$GROUP" ] && {
		echo 0 >"$TRACE/instances/$GROUP/events/$GROUP/f/enable" 2>/dev/null
		rmdir "$TRACE/instances/$GROUP"
	}
	echo "-:$GROUP/f" >>"$TRACE/uprobe_events" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
cat >"$DIR/main.go" <<GO
package main

import (
	"fmt"
	"time"
)

//go:noinline
func leaf(x int) int { return x*3 + 1 }

// a frame large enough for the lea/cmp/jbe prologue of the probed functions
//go:noinline
func probed(x int) int { var a [64]int; a[x&63] = leaf(x); return a[(x+1)&63] + leaf(x+1) }

func main() {
	s := 0
	t := time.Now()
	for i := 0; i < $CALLS; i++ {
		s += probed(i)
	}
	fmt.Printf("%.1f %d\n", float64(time.Since(t).Nanoseconds())/$CALLS, s&1)
}
GO
(cd "$DIR" && GO111MODULE=off GOFLAGS= HOME=$DIR GOCACHE=$DIR/cache go build -o prog main.go) || die "go build failed"
# the function's vaddr, its file offset (the first PT_LOAD of a Go binary
# maps the file from offset 0 at its base), and the jbe after the check
VA=$(go tool nm "$DIR/prog" | awk '$3 == "main.probed" {print $1}')
BASE=$(readelf -lW "$DIR/prog" | awk '$1 == "LOAD" {print $3; exit}')
[ -n "$VA" ] && [ -n "$BASE" ] || die "main.probed not found"
ENTRY=$((0x$VA - BASE))
JBE=$(objdump -d --start-address=0x$VA --stop-address=$((0x$VA + 24)) "$DIR/prog" |
	awk '/\tjbe / {sub(":", "", $1); print $1; exit}')
[ -n "$JBE" ] || die "no jbe in the prologue of main.probed"
JBE=$((0x$JBE - BASE))

run() { # offset or "" (no probe): ns per call
	if [ -n "$1" ]; then
		echo "p:$GROUP/f $DIR/prog:$1" >>"$TRACE/uprobe_events" || die "uprobe_events"
		mkdir "$TRACE/instances/$GROUP"
		echo 1 >"$TRACE/instances/$GROUP/events/$GROUP/f/enable"
	fi
	"$DIR/prog" | awk '{print $1}'
	if [ -n "$1" ]; then
		echo 0 >"$TRACE/instances/$GROUP/events/$GROUP/f/enable"
		rmdir "$TRACE/instances/$GROUP"
		echo "-:$GROUP/f" >>"$TRACE/uprobe_events"
	fi
}

NONE=$(run "")
AT_ENTRY=$(run "$ENTRY")
AT_JBE=$(run "$JBE")
echo "## Go runtime probes: cost of one uprobe hit"
echo
echo "$(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $CALLS calls of a Go function (go $(go env GOVERSION))"
echo
echo "| probe | ns per call | of which the probe |"
echo "|---|---|---|"
echo "| none | $NONE | |"
awk -v n="$NONE" -v e="$AT_ENTRY" -v j="$AT_JBE" 'BEGIN {
	printf "| entry (single-stepped) | %s | %.0f |\n", e, e - n
	printf "| jbe of the stack check (emulated) | %s | %.0f |\n", j, j - n
}'
