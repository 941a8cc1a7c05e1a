# SPDX-License-Identifier: Apache-2.0
# libFuzzer targets; the top Makefile includes this file, and it also works
# on its own:  make -f tests/fuzz/fuzz.mk fuzz-smoke
#
#   make fuzz [FUZZ_SECONDS=60]   build build/fuzz/fuzz_{nats,http,jwt,gopclntab}, run each
#   make fuzz-smoke               the same for 10 s each (CI)
#   make fuzz-nats / fuzz-http / fuzz-jwt / fuzz-gopclntab  one target (as for fuzz)
#
# Runs work on a temporary copy of the committed seed corpus, so it never
# grows; crashes are written to build/fuzz/ (crash-*, leak-*, timeout-*;
# http-crash-* and so on for the HTTP target).
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

# Lowered limits so that inputs of a few KiB reach them (see http.h).
FUZZ_HTTP_DEFS := -DWS_HTTP_MAX_HEAD=512 -DWS_HTTP_MAX_HEADERS=8 \
		  -DWS_HTTP_MAX_CHUNK_LINE=40 -DWS_HTTP_MAX_PIPELINE=4
FUZZ_HTTP_SRCS := $(FUZZ_ROOT)/agent/proto/http.c $(FUZZ_ROOT)/tests/fuzz/fuzz_http.c
FUZZ_HTTP_HDRS := $(FUZZ_ROOT)/agent/proto/http.h $(FUZZ_ROOT)/agent/proto/parser.h
FUZZ_HTTP_BIN  := $(FUZZ_OUT)/fuzz_http
FUZZ_HTTP_ARGS := -dict=$(FUZZ_ROOT)/tests/fuzz/http.dict -max_len=8192 \
		  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		  -artifact_prefix=$(FUZZ_OUT)/http-

# JWKS parsing and JWT verification (agent/jwks.c, OpenSSL).
FUZZ_JWT_SRCS  := $(FUZZ_ROOT)/agent/jwks.c $(FUZZ_ROOT)/tests/fuzz/fuzz_jwt.c
FUZZ_JWT_HDRS  := $(FUZZ_ROOT)/agent/jwks.h
FUZZ_JWT_BIN   := $(FUZZ_OUT)/fuzz_jwt
FUZZ_JWT_ARGS  := -dict=$(FUZZ_ROOT)/tests/fuzz/jwt.dict -max_len=8192 \
		  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		  -artifact_prefix=$(FUZZ_OUT)/jwt-

# Go binaries' function tables (agent/gopclntab.c, the uprobe attacher's).
FUZZ_GOPCLN_SRCS := $(FUZZ_ROOT)/agent/gopclntab.c $(FUZZ_ROOT)/tests/fuzz/fuzz_gopclntab.c
FUZZ_GOPCLN_HDRS := $(FUZZ_ROOT)/agent/gopclntab.h
FUZZ_GOPCLN_BIN  := $(FUZZ_OUT)/fuzz_gopclntab
FUZZ_GOPCLN_ARGS := -dict=$(FUZZ_ROOT)/tests/fuzz/gopclntab.dict -max_len=8192 \
		  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		  -artifact_prefix=$(FUZZ_OUT)/gopclntab-

# $(call FUZZ_RUN,binary,args,seconds,corpus dir)
FUZZ_RUN = FUZZ_TMP=$$(mktemp -d) && cp $(4)/* "$$FUZZ_TMP"/ && \
	$(1) $(2) -max_total_time=$(3) "$$FUZZ_TMP"; \
	FUZZ_RC=$$?; rm -rf "$$FUZZ_TMP"; exit $$FUZZ_RC

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-nats fuzz-http fuzz-smoke-nats \
	fuzz-smoke-http fuzz-jwt fuzz-smoke-jwt fuzz-gopclntab fuzz-smoke-gopclntab

fuzz-build: $(FUZZ_NATS_BIN) $(FUZZ_HTTP_BIN) $(FUZZ_JWT_BIN) $(FUZZ_GOPCLN_BIN)

$(FUZZ_NATS_BIN): $(FUZZ_NATS_SRCS) $(FUZZ_NATS_HDRS)
	@mkdir -p $(@D)
	@printf '  %-8s %s\n' FUZZ-CC $@
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_NATS_DEFS) $(FUZZ_NATS_SRCS) -ljson-c -o $@

$(FUZZ_HTTP_BIN): $(FUZZ_HTTP_SRCS) $(FUZZ_HTTP_HDRS)
	@mkdir -p $(@D)
	@printf '  %-8s %s\n' FUZZ-CC $@
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_HTTP_DEFS) $(FUZZ_HTTP_SRCS) -o $@

$(FUZZ_JWT_BIN): $(FUZZ_JWT_SRCS) $(FUZZ_JWT_HDRS)
	@mkdir -p $(@D)
	@printf '  %-8s %s\n' FUZZ-CC $@
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_JWT_SRCS) -ljson-c -lcrypto -o $@

$(FUZZ_GOPCLN_BIN): $(FUZZ_GOPCLN_SRCS) $(FUZZ_GOPCLN_HDRS)
	@mkdir -p $(@D)
	@printf '  %-8s %s\n' FUZZ-CC $@
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_GOPCLN_SRCS) -o $@

# One target after the other (without -j); a failure stops the rest.
fuzz: fuzz-nats fuzz-http fuzz-jwt fuzz-gopclntab

fuzz-smoke: fuzz-smoke-nats fuzz-smoke-http fuzz-smoke-jwt fuzz-smoke-gopclntab

fuzz-nats: $(FUZZ_NATS_BIN)
	@$(call FUZZ_RUN,$(FUZZ_NATS_BIN),$(FUZZ_NATS_ARGS),$(FUZZ_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/nats)

fuzz-smoke-nats: $(FUZZ_NATS_BIN)
	@$(call FUZZ_RUN,$(FUZZ_NATS_BIN),$(FUZZ_NATS_ARGS),$(FUZZ_SMOKE_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/nats)

fuzz-http: $(FUZZ_HTTP_BIN)
	@$(call FUZZ_RUN,$(FUZZ_HTTP_BIN),$(FUZZ_HTTP_ARGS),$(FUZZ_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/http)

fuzz-smoke-http: $(FUZZ_HTTP_BIN)
	@$(call FUZZ_RUN,$(FUZZ_HTTP_BIN),$(FUZZ_HTTP_ARGS),$(FUZZ_SMOKE_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/http)

fuzz-jwt: $(FUZZ_JWT_BIN)
	@$(call FUZZ_RUN,$(FUZZ_JWT_BIN),$(FUZZ_JWT_ARGS),$(FUZZ_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/jwt)

fuzz-smoke-jwt: $(FUZZ_JWT_BIN)
	@$(call FUZZ_RUN,$(FUZZ_JWT_BIN),$(FUZZ_JWT_ARGS),$(FUZZ_SMOKE_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/jwt)

fuzz-gopclntab: $(FUZZ_GOPCLN_BIN)
	@$(call FUZZ_RUN,$(FUZZ_GOPCLN_BIN),$(FUZZ_GOPCLN_ARGS),$(FUZZ_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/gopclntab)

fuzz-smoke-gopclntab: $(FUZZ_GOPCLN_BIN)
	@$(call FUZZ_RUN,$(FUZZ_GOPCLN_BIN),$(FUZZ_GOPCLN_ARGS),$(FUZZ_SMOKE_SECONDS),$(FUZZ_ROOT)/tests/fuzz/corpus/gopclntab)
