# SPDX-License-Identifier: Apache-2.0
# libFuzzer targets; the top Makefile includes this file, and it also works
# on its own:  make -f tests/fuzz/fuzz.mk fuzz-smoke
#
#   make fuzz [FUZZ_SECONDS=60]   build build/fuzz/fuzz_nats and run it
#   make fuzz-smoke               the same for 10 s (CI)
#
# Runs work on a temporary copy of the committed seed corpus, so it never
# grows; crashes are written to build/fuzz/ (crash-*, leak-*, timeout-*).
# Only FUZZ_* names are defined here, so nothing clashes with the includer.

FUZZ_ROOT      := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../..)
FUZZ_CC        ?= clang
FUZZ_SECONDS   ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_OUT       ?= $(FUZZ_ROOT)/build/fuzz
FUZZ_CFLAGS    := -g -O1 -fsanitize=fuzzer,address,undefined \
		  -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE \
		  -Wall -Wextra -Werror -Wno-unused-parameter \
		  -I$(FUZZ_ROOT)/include -I$(FUZZ_ROOT)/agent -I$(FUZZ_ROOT)/bpf
# Lowered limits so that inputs of a few KiB reach them (see nats.h).
FUZZ_NATS_DEFS := -DWS_NATS_MAX_CONTROL_LINE=240 -DWS_NATS_MAX_PAYLOAD_KEEP=100
FUZZ_NATS_SRCS := $(FUZZ_ROOT)/agent/proto/nats.c $(FUZZ_ROOT)/tests/fuzz/fuzz_nats.c
FUZZ_NATS_HDRS := $(FUZZ_ROOT)/agent/proto/nats.h $(FUZZ_ROOT)/agent/proto/parser.h
FUZZ_NATS_BIN  := $(FUZZ_OUT)/fuzz_nats
FUZZ_NATS_ARGS := -dict=$(FUZZ_ROOT)/tests/fuzz/nats.dict -max_len=8192 \
		  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		  -artifact_prefix=$(FUZZ_OUT)/

# $(call FUZZ_RUN,binary,args,seconds,corpus dir)
FUZZ_RUN = FUZZ_TMP=$$(mktemp -d) && cp $(4)/* "$$FUZZ_TMP"/ && \
	$(1) $(2) -max_total_time=$(3) "$$FUZZ_TMP"; \
	FUZZ_RC=$$?; rm -rf "$$FUZZ_TMP"; exit $$FUZZ_RC

.PHONY: fuzz fuzz-smoke fuzz-build

fuzz-build: $(FUZZ_NATS_BIN)

$(FUZZ_NATS_BIN): $(FUZZ_NATS_SRCS) $(FUZZ_NATS_HDRS)
	@mkdir -p $(@D)
	@printf '  %-8s %s\n' FUZZ-CC $@
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_NATS_DEFS) $(FUZZ_NATS_SRCS) -ljson-c -o $@

fuzz: $(FUZZ_NATS_BIN)
	@$(call FUZZ_RUN,$(FUZZ_NATS_BIN),$(FUZZ_NATS_ARGS),$(FUZZ_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/nats)

fuzz-smoke: $(FUZZ_NATS_BIN)
	@$(call FUZZ_RUN,$(FUZZ_NATS_BIN),$(FUZZ_NATS_ARGS),$(FUZZ_SMOKE_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/nats)
