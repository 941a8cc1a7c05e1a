# SPDX-License-Identifier: Apache-2.0
# wirespan build. `make` builds everything into build/; `make help` lists targets.

OUT        := build
CLANG      ?= clang
CC         ?= cc
BPFTOOL    ?= bpftool
ARCH       := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
PKGS       := libbpf json-c libxxhash libprotobuf-c libnats yaml-0.1 libcrypto libcap libmicrohttpd libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN       := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS     ?= -O2 -g
CFLAGS     += -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Ibpf -Iagent -I$(OUT) -I$(OUT)/gen $(PKG_CFLAGS)
LDLIBS     += $(PKG_LIBS) -lelf -lz
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) $(WARN) -Iinclude -Ibpf

ifeq ($(V),1)
Q :=
msg =
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

BPF_SRCS    := $(wildcard bpf/*.bpf.c)
BPF_OBJS    := $(patsubst bpf/%.bpf.c,$(OUT)/%.bpf.o,$(BPF_SRCS))
SKELS       := $(patsubst bpf/%.bpf.c,$(OUT)/%.skel.h,$(BPF_SRCS))
# OTLP .proto files (agent/export/) become C with protoc-c, in build/gen/.
PROTOS      := $(wildcard agent/export/*.proto)
PB_SRCS     := $(patsubst agent/export/%.proto,$(OUT)/gen/%.pb-c.c,$(PROTOS))
PB_HDRS     := $(PB_SRCS:.c=.h)
AGENT_SRCS  := $(wildcard agent/*.c agent/proto/*.c agent/export/*.c) $(PB_SRCS)
LIB_SRCS    := $(filter-out agent/main.c,$(AGENT_SRCS))
LIB_OBJS    := $(patsubst %.c,$(OUT)/obj/%.o,$(LIB_SRCS))
MAIN_OBJ    := $(OUT)/obj/agent/main.o
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
UNIT_BINS   := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(UNIT_SRCS))
HDRS        := $(wildcard include/wirespan/*.h bpf/*.h bpf/lib/*.h agent/*.h agent/proto/*.h agent/export/*.h)

# Skeletons and objects are inputs of later builds, not throwaway intermediates.
.SECONDARY: $(BPF_OBJS) $(SKELS) $(PB_SRCS) $(PB_HDRS)

.PHONY: all deps test unit-test integration-test check format lint clean vmlinux run demo bench bench-replay bench-nats reliability kernels soak fuzz help install uninstall dist

all: $(OUT)/wirespan $(UNIT_BINS) $(OUT)/bench_agent_replay $(OUT)/bench/nats_lat $(OUT)/bench/bpf_floor $(OUT)/bench/ring_copy $(OUT)/churn_load

$(OUT) $(OUT)/tests:
	$(Q)mkdir -p $@

$(OUT)/%.bpf.o: bpf/%.bpf.c $(HDRS) bpf/vmlinux.h | $(OUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp.o
	$(Q)$(BPFTOOL) gen object $@ $@.tmp.o
	$(Q)rm -f $@.tmp.o

$(OUT)/%.skel.h: $(OUT)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $(notdir $*)_bpf > $@

$(OUT)/gen/%.pb-c.c $(OUT)/gen/%.pb-c.h: agent/export/%.proto
	$(call msg,PROTOC-C,$@)
	$(Q)mkdir -p $(OUT)/gen
	$(Q)protoc-c --proto_path=agent/export --c_out=$(OUT)/gen $<

$(OUT)/obj/%.o: %.c $(HDRS) $(SKELS) $(PB_HDRS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(OUT)/libwirespan.a: $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(OUT)/wirespan: $(MAIN_OBJ) $(OUT)/libwirespan.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(OUT)/tests/%: tests/unit/%.c $(OUT)/libwirespan.a $(HDRS) $(PB_HDRS) | $(OUT)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -Itests/unit $< $(OUT)/libwirespan.a $(LDLIBS) -lcmocka -o $@

# Regenerate the committed vmlinux.h from the running kernel's BTF.
vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h

deps:
	$(Q)bash .ci/deps

unit-test: $(UNIT_BINS)
	$(Q)bash tests/run-unit.sh $(UNIT_BINS)

integration-test: all
	$(Q)bash tests/run-integration.sh

# Every test. As root this includes the BPF integration tests.
test: all
	$(Q)bash tests/run-all.sh

format:
	$(Q)clang-format -i $(filter-out bpf/vmlinux.h,$(wildcard agent/*.[ch] agent/proto/*.[ch] agent/export/*.[ch] bpf/*.[ch] bpf/lib/*.h include/wirespan/*.h tests/unit/*.[ch] tests/peers/c/*.c tests/bench/*.c tests/reliability/*.c tests/fuzz/*.c))

lint: all
	$(call msg,FORMAT,check)
	$(Q)clang-format --dry-run --Werror $(filter-out bpf/vmlinux.h,$(wildcard agent/*.[ch] agent/proto/*.[ch] agent/export/*.[ch] bpf/*.[ch] bpf/lib/*.h include/wirespan/*.h tests/unit/*.[ch] tests/peers/c/*.c tests/bench/*.c tests/reliability/*.c tests/fuzz/*.c))
	$(call msg,CPPCHECK,agent)
	$(Q)cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability,performance \
	    --suppress=missingIncludeSystem --inline-suppr --include=.ci/cppcheck-macros.h \
	    -Iinclude -Iagent -D__linux__ agent

check: lint test

# Installs what is missing, builds, starts a nats-server if none answers,
# runs the agent and shows its spans with `wirespan tail` (deploy/run.sh).
run:
	$(Q)bash deploy/run.sh

# A small traced system on loopback: caddy, Go, NATS, Node (deploy/demo/).
demo: $(OUT)/wirespan
	$(Q)bash deploy/demo/demo.sh

bench: all bench-replay
	$(Q)bash tests/bench/run.sh

# The long reliability suite (docs/RELIABILITY.md; root). Short versions of
# the same scenarios are in `make test` (tests/integration/test_reliability.py).
reliability: all
	$(Q)python3 tests/reliability/run.py $(RELIABILITY_ARGS)

# Connection and process churn load (tests/integration/reliability_churn.py):
# static, so that exec'ing it 1000 times a second stays cheap.
$(OUT)/churn_load: tests/reliability/churn_load.c | $(OUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -static $< -o $@

# Debian 12's own 6.1 kernel under qemu (TCG) and this host's kernel: every
# program loads and attaches, a NATS exchange is captured byte-exact, and the
# verifier instruction counts are tabled (docs/RELIABILITY.md, "Kernels";
# root; KERNELS_ARGS=--record rewrites tests/kernels/verified_insns.json).
kernels: all
	$(Q)python3 tests/kernels/run.py $(KERNELS_ARGS)

# The soak (issue 9 item 7; root): mixed load, nats-server restarts, RSS and
# fds over time. Results in build/reliability/soak.{json,md}.
DURATION   ?= 600
soak: all
	$(Q)python3 tests/reliability/soak.py --duration $(DURATION) $(SOAK_ARGS)

# ---- install, uninstall, dist ----
PREFIX     ?= /usr/local
BINDIR     := $(PREFIX)/bin
DOCDIR     := $(PREFIX)/share/doc/wirespan
UNITDIR    ?= /etc/systemd/system
CONFDIR    ?= /etc/wirespan
VERSION    := $(shell sed -n 's/^#define WIRESPAN_VERSION "\(.*\)"/\1/p' agent/main.c)
DOCS       := README.md LICENSE $(wildcard docs/*.md)

install: $(OUT)/wirespan
	install -D -m 0755 $(OUT)/wirespan $(DESTDIR)$(BINDIR)/wirespan
	install -d -m 0750 $(DESTDIR)$(CONFDIR)
	install -d $(DESTDIR)$(DOCDIR)
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local/bin/wirespan|$(BINDIR)/wirespan|;s|/usr/local/share/doc|$(PREFIX)/share/doc|' \
	    deploy/systemd/wirespan.service > $(DESTDIR)$(UNITDIR)/wirespan.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/wirespan.service

# Leaves $(CONFDIR) (configuration and credentials are the user's).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/wirespan $(DESTDIR)$(UNITDIR)/wirespan.service
	rm -rf $(DESTDIR)$(DOCDIR)

# A tarball with the binary, the unit, the manifests, the docs and the list
# of Debian runtime packages it needs (DEPENDS): build/wirespan-VERSION-ARCH.tar.gz
dist: $(OUT)/wirespan
	$(Q)bash deploy/dist.sh $(OUT) $(VERSION)

# The agent's userspace path replayed offline (no root): tests/bench/replay.sh.
# --wrap counts the allocations made by wirespan code.
$(OUT)/bench_agent_replay: tests/bench/bench_agent_replay.c $(OUT)/libwirespan.a $(HDRS) $(PB_HDRS)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< $(OUT)/libwirespan.a \
	    -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,--wrap=strdup,--wrap=strndup \
	    $(LDLIBS) -o $@

bench-replay: $(OUT)/bench_agent_replay
	$(Q)bash tests/bench/replay.sh

# Empty programs on wirespan's tracepoints: the floor of part 1 of `make bench`.
$(OUT)/bench/bpf_floor: tests/bench/bpf_floor.c $(OUT)/floor.skel.h
	$(Q)mkdir -p $(dir $@)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

# One BPF program moving B bytes and nothing else: the copy's own cost, set
# against the captured 4 KiB write in part 1 of `make bench`.
$(OUT)/bench/ring_copy: tests/bench/ring_copy.c $(OUT)/ringcopy.skel.h
	$(Q)mkdir -p $(dir $@)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< $(LDLIBS) -o $@

# NATS pub/sub through nats-server with and without the agent (root):
# tests/bench/nats_bench.sh, part 9 of `make bench`.
$(OUT)/bench/nats_lat: tests/bench/nats_lat.c tests/bench/nats_load.h
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $< $(shell pkg-config --libs libnats) -o $@

bench-nats: $(OUT)/wirespan $(OUT)/bench/nats_lat
	$(Q)bash tests/bench/nats_bench.sh

clean:
	$(call msg,CLEAN,$(OUT))
	$(Q)rm -rf $(OUT)

help:
	@echo "make [V=1]          build everything into $(OUT)/"
	@echo "make deps           install the Debian and npm packages wirespan needs"
	@echo "make test           run every test (BPF integration tests need root)"
	@echo "make check          format check, cppcheck and make test"
	@echo "make run            deps, build, nats-server if none, agent + live tail (root)"
	@echo "make demo           a traced caddy/Go/NATS/Node system on loopback (root)"
	@echo "make bench          run the benchmarks (root)"
	@echo "make bench-replay   the agent's userspace path replayed offline"
	@echo "make bench-nats     NATS pub/sub with and without the agent (root; QUICK=1)"
	@echo "make reliability    the long reliability suite (root; RELIABILITY_ARGS=--quick)"
	@echo "make kernels        6.1 under qemu + this kernel: load, capture, verifier counts (root)"
	@echo "make soak           mixed load + NATS restarts for DURATION s (600; root)"
	@echo "make fuzz           run the libFuzzer targets (FUZZ_SECONDS=60)"
	@echo "make vmlinux        regenerate bpf/vmlinux.h from this kernel"
	@echo "make install        install into PREFIX (/usr/local), DESTDIR respected"
	@echo "make uninstall      remove what make install installed (not /etc/wirespan)"
	@echo "make dist           build/wirespan-VERSION-ARCH.tar.gz with DEPENDS"
	@echo "make clean          remove $(OUT)/"

# `make fuzz` / `make fuzz-smoke`: libFuzzer targets (tests/fuzz/).
-include tests/fuzz/fuzz.mk
