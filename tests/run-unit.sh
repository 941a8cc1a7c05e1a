#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run the cmocka unit-test binaries given as arguments (under valgrind when
# WS_VALGRIND=1) and end with "N passed, N failed".
set -u
passed=0 failed=0
for bin in "$@"; do
	name=$(basename "$bin")
	if [ "${WS_VALGRIND:-0}" = 1 ]; then
		out=$(valgrind -q --leak-check=full --error-exitcode=99 "$bin" 2>&1); rc=$?
	else
		out=$("$bin" 2>&1); rc=$?
	fi
	printf '%s\n' "$out" | grep -E '^\[  (FAILED|ERROR)|^\[  PASSED|^\[==========\]' | sed "s|^|  $name: |"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	p=${p:-0} f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		# crashed, or valgrind found an error: count the binary as a failure
		echo "  $name: exited $rc"
		printf '%s\n' "$out" | tail -n 20 | sed "s|^|  $name: |"
		f=1
	fi
	passed=$((passed + p)) failed=$((failed + f))
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
