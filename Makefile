# Comet build. `make` builds everything into build/; `make test`, `make bench`, `make run`.
# Quiet unless V=1.

CXX      ?= g++
CC       ?= gcc
BUILD    := build
OPT      ?= -O2
CXXFLAGS := -std=c++20 $(OPT) -g -Wall -Wextra -Werror -fPIC -pthread \
            -msse4.2 $(EXTRA_CXXFLAGS)
LDLIBS   := -lzstd -pthread $(EXTRA_LDFLAGS)
Q        := $(if $(V),,@)

.DELETE_ON_ERROR:
.DEFAULT_GOAL := all
.PHONY: all lib tools preload tests benches deps test run bench sanitize clean

# Layers, each seeing only the include paths below it, so that a wrong include does not compile:
#   lib/include  public headers (the C ABI, the C++ API, the on-disk and shared-memory formats)
#   lib/base     status, system calls (env), CRC32C, text, clock: used by everything above
#   shm/         the control region and process membership: base + the formats only
#   lib/src      the engine: base + shm
#   lib/export   the few engine headers the benchmarks use (record framing, probe sites)
#   tools/, preload/, bpf/, bench/: public headers and base (bench: and lib/export)
INC_PUBLIC := -Ilib/include
INC_BASE   := $(INC_PUBLIC) -Ilib/base
INC_SHM    := $(INC_BASE) -Ishm
INC_ENGINE := $(INC_SHM) -Ilib/src -Ilib/export
$(BUILD)/obj/lib/base/%.o: INCLUDES := $(INC_BASE)
$(BUILD)/obj/shm/%.o:      INCLUDES := $(INC_SHM)
$(BUILD)/obj/lib/src/%.o:  INCLUDES := $(INC_ENGINE)
$(BUILD)/obj/tools/%.o:    INCLUDES := $(INC_BASE) -Itools -Ibpf -I$(BUILD)/bpf
$(BUILD)/obj/bpf/%.o:      INCLUDES := $(INC_PUBLIC) -Ibpf -I$(BUILD)/bpf
$(BUILD)/obj/preload/%.o:  INCLUDES := $(INC_PUBLIC) -Ipreload
$(BUILD)/obj/bench/%.o:    INCLUDES := $(INC_BASE) -Ilib/export -Ibench
$(BUILD)/obj/tests/%.o:    INCLUDES := $(INC_ENGINE) -Ibpf -I$(BUILD)/bpf -Itests

LIB_SRCS  := $(wildcard lib/base/*.cc) $(wildcard shm/*.cc) $(wildcard lib/src/*.cc)
LIB_OBJS  := $(patsubst %.cc,$(BUILD)/obj/%.o,$(LIB_SRCS))
TOOL_SRCS := $(filter-out tools/probe_report.cc,$(wildcard tools/*.cc))

# eBPF (bpf/): programs -> objects -> skeletons -> the loader in `comet probe`. Built when the
# toolchain (clang, llvm-strip, bpftool, libbpf-dev) and the kernel's BTF are there; without them
# everything else builds and `comet probe` says what is missing.
BPF_CLANG  ?= clang
LLVM_STRIP ?= llvm-strip
BPFTOOL    ?= $(or $(shell command -v bpftool 2>/dev/null),/usr/sbin/bpftool)
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
BPF_ARCH   := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
HAVE_BPF   ?= $(shell command -v $(BPF_CLANG) >/dev/null && command -v $(LLVM_STRIP) >/dev/null \
                && [ -x $(BPFTOOL) ] && [ -r $(VMLINUX_BTF) ] && [ -r /usr/include/bpf/libbpf.h ] \
                && echo 1)
BPF_PROGS  := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.bpf.o,$(wildcard bpf/*.bpf.c))
BPF_SKELS  := $(BPF_PROGS:.bpf.o=.skel.h)
ifeq ($(HAVE_BPF),1)
TOOL_SRCS  += tools/probe_report.cc $(wildcard bpf/*.cc)
TOOL_LIBS  := -lbpf -lelf -lz
$(BUILD)/obj/tools/%.o $(BUILD)/obj/bpf/%.o: CXXFLAGS += -DCOMET_HAVE_BPF
$(BUILD)/obj/tools/cmd_probe.o $(BUILD)/obj/tools/probe_report.o $(BUILD)/obj/bpf/probe.o: \
  $(BPF_SKELS)
endif
TOOL_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(TOOL_SRCS))
TEST_SRCS := $(wildcard tests/*_test.cc)
TEST_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(TEST_SRCS))
PRELOAD_SRCS := $(wildcard preload/*.cc)
PRELOAD_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(PRELOAD_SRCS))
BENCH_SRCS := $(wildcard bench/*.cc)
BENCH_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(BENCH_SRCS))

all: lib tools preload

ifeq ($(HAVE_BPF),1)
$(BUILD)/bpf/vmlinux.h:
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  BTF     $@")
	$(Q)$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c lib/include/comet/bpf_abi.h $(BUILD)/bpf/vmlinux.h
	@$(if $(Q),echo "  BPF     $@")
	$(Q)$(BPF_CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -Wall -Werror \
	  -I$(BUILD)/bpf -Ilib/include -Ibpf -idirafter /usr/include/$(shell $(CC) -dumpmachine) -c $< -o $@
	$(Q)$(LLVM_STRIP) -g $@

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	@$(if $(Q),echo "  SKEL    $@")
	$(Q)$(BPFTOOL) gen skeleton $< name $*_bpf > $@
endif

# libcomet.so carries the C ABI of comet/comet.h alone: the library's objects are built with
# hidden visibility (comet.h declares its functions visible) and lib/comet.map versions the
# exports; its SONAME is libcomet.so.<COMET_VERSION_MAJOR>. C++ programs, the tools, the tests
# and the benchmarks link libcomet.a.
COMET_MAJOR := $(shell sed -n 's/^\#define COMET_VERSION_MAJOR \([0-9]*\).*/\1/p' lib/include/comet/comet.h)
SONAME      := libcomet.so.$(COMET_MAJOR)
LIB_CXXFLAGS := -fvisibility=hidden -fvisibility-inlines-hidden
$(LIB_OBJS): CXXFLAGS += $(LIB_CXXFLAGS)

# Every object is rebuilt when the compiler or its flags change: this file holds the last ones.
FLAGS_STAMP := $(BUILD)/cxxflags
$(shell mkdir -p $(BUILD) && echo '$(CXX) $(CXXFLAGS) / $(LIB_CXXFLAGS)' | cmp -s - $(FLAGS_STAMP) \
  || echo '$(CXX) $(CXXFLAGS) / $(LIB_CXXFLAGS)' > $(FLAGS_STAMP))

lib: $(BUILD)/lib/libcomet.a $(BUILD)/lib/libcomet.so
tools: $(BUILD)/bin/comet

$(BUILD)/obj/%.o: %.cc $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXX     $<")
	$(Q)$(CXX) $(CXXFLAGS) $(INCLUDES) -MMD -MP -c $< -o $@

$(BUILD)/lib/libcomet.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/lib/$(SONAME): $(LIB_OBJS) lib/comet.map
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/comet.map -Wl,-z,defs \
	  -o $@ $(LIB_OBJS) $(LDLIBS)

$(BUILD)/lib/libcomet.so: $(BUILD)/lib/$(SONAME)
	$(Q)ln -sf $(SONAME) $@

# The LD_PRELOAD shim: the engine linked in statically; the version script exports only the
# interposed functions (everything else, the engine included, stays local to the shim).
preload: $(BUILD)/lib/libcomet_preload.so
$(PRELOAD_OBJS): CXXFLAGS += -fvisibility=hidden
$(BUILD)/lib/libcomet_preload.so: $(PRELOAD_OBJS) $(BUILD)/lib/libcomet.a preload/exports.map
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) -shared -o $@ $(PRELOAD_OBJS) $(BUILD)/lib/libcomet.a \
	  -Wl,--version-script=preload/exports.map -Wl,--exclude-libs,ALL -Wl,-z,defs $(LDLIBS) -ldl

$(BUILD)/bin/comet: $(TOOL_OBJS) $(BUILD)/lib/libcomet.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) -o $@ $(TOOL_OBJS) $(BUILD)/lib/libcomet.a $(LDLIBS) $(TOOL_LIBS)

$(BUILD)/bin/comet_tests: $(TEST_OBJS) $(BUILD)/lib/libcomet.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) -o $@ $(TEST_OBJS) $(BUILD)/lib/libcomet.a -lgtest -lgtest_main $(LDLIBS)

$(BUILD)/bin/comet_bench: $(BENCH_OBJS) $(BUILD)/lib/libcomet.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) -o $@ $(BENCH_OBJS) $(BUILD)/lib/libcomet.a -lbenchmark $(LDLIBS)

# A program linked against libcomet.so, for the tests of `comet probe --lib`.
$(BUILD)/bin/comet_probe_target: tests/probe_target.c $(BUILD)/lib/libcomet.so
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -O2 -g -Wall -Wextra -Werror -Ilib/include $< -o $@ -L$(BUILD)/lib -lcomet \
	  -Wl,-rpath,'$$ORIGIN/../lib'

# What one append touches, counted under valgrind by bench/touch/append_touch.sh (not run by
# make bench: it needs valgrind).
$(BUILD)/bin/comet_append_touch: bench/touch/append_touch.c lib/include/comet/comet.h $(BUILD)/lib/libcomet.so
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -O2 -g -Wall -Wextra -Werror -Ilib/include $< -o $@ -L$(BUILD)/lib -lcomet \
	  -Wl,-rpath,'$$ORIGIN/../lib'

# A C99 program that uses libcomet.so through comet.h alone (tests/abi_test.cc runs it).
$(BUILD)/bin/comet_c_client: tests/c_client.c lib/include/comet/comet.h $(BUILD)/lib/libcomet.so
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -std=c99 -pedantic -O2 -g -Wall -Wextra -Werror -Ilib/include $< -o $@ \
	  -L$(BUILD)/lib -lcomet -Wl,-rpath,'$$ORIGIN/../lib'

$(BUILD)/obj/tests/abi_test.o: CXXFLAGS += -DCOMET_HEADER='"$(abspath lib/include/comet/comet.h)"'

# Programs the preload tests run under the shim: plain, fortified, and C++ iostreams.
PRELOAD_TARGETS := $(BUILD)/bin/preload_target $(BUILD)/bin/preload_target_fortify \
                   $(BUILD)/bin/preload_target_cxx
$(BUILD)/bin/preload_target: tests/preload/target.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -O0 -g -Wall -Wextra -Werror -pthread $< -o $@
$(BUILD)/bin/preload_target_fortify: tests/preload/target.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -O2 -D_FORTIFY_SOURCE=2 -g -Wall -Wextra -Werror -Wno-unused-result -pthread $< -o $@
$(BUILD)/bin/preload_target_cxx: tests/preload/target_cxx.cc
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXX     $@")
	$(Q)$(CXX) -O2 -g -Wall -Wextra -Werror $< -o $@

# What one log line costs the program writing it, with and without the shim (make run, make bench).
$(BUILD)/bin/comet_line_cost: bench/preload/line_cost.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -O2 -g -Wall -Wextra -Werror -pthread $< -o $@

tests: $(BUILD)/bin/comet_tests $(BUILD)/bin/comet_probe_target $(BUILD)/bin/comet_c_client tools \
       preload $(PRELOAD_TARGETS)
benches: $(BUILD)/bin/comet_bench $(BUILD)/bin/comet_append_touch

# Every Debian package the build, the tests and the benchmarks need, and the servers the shim's
# tests and `make run` start under it. Idempotent: installs nothing when all are present.
DEB_PKGS := g++ make libzstd-dev libboost-dev libgtest-dev libbenchmark-dev libbpf-dev \
            bpftool clang llvm libelf-dev zlib1g-dev systemtap-sdt-dev pkg-config curl \
            nginx apache2 python3-gunicorn
# As root, missing packages are installed without their recommended ones (one progress line
# per step, apt's output kept in $(BUILD)/deps.log and shown only if it fails); otherwise the
# missing ones are named.
DEPS_LOG := $(BUILD)/deps.log
deps:
	$(Q)missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "make deps: missing packages; run as root, or install these packages:" $$missing >&2; \
	  exit 1; \
	fi; \
	mkdir -p $(BUILD); : > $(DEPS_LOG); \
	step() { echo "  DEPS    $$1"; shift; "$$@" >> $(DEPS_LOG) 2>&1 || { \
	  echo "make deps: failed ($$*); apt's output ($(DEPS_LOG)):" >&2; cat $(DEPS_LOG) >&2; exit 1; }; }; \
	step "updating the package lists" apt-get update; \
	step "installing $$(echo $$missing | wc -w) packages: $$(echo $$missing)" \
	  env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	echo "  DEPS    done (apt's output: $(DEPS_LOG))"

# Tests run one binary; COMET_BIN names the comet tool the process tests run.
test: deps
	$(Q)$(MAKE) --no-print-directory -j$$(nproc) tests
	$(Q)COMET_BIN=$(abspath $(BUILD)/bin/comet) $(BUILD)/bin/comet_tests $(GTEST_ARGS)

# As root, with BPF built and a BPF filesystem on /sys/fs/bpf, the demo runs under `comet probe`
# (attached to PROBE_TARGET, a program or library with the engine linked in) and ends with the
# histograms of its run. PROBED runs any command that way: $(PROBED) CMD ARGS.
PROBE_TARGET ?= $(BUILD)/bin/comet
PROBED = if [ "$$(id -u)" = 0 ] && [ "$(HAVE_BPF)" = 1 ] && \
            [ "$$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" = bpf_fs ]; then \
           set -- $(BUILD)/bin/comet probe --lib $(abspath $(PROBE_TARGET)) --interval 0 \
             --pin /sys/fs/bpf/comet-run-$$$$ -- "$$@"; \
         else echo "  (run as root with /sys/fs/bpf mounted to see the eBPF histograms)"; fi; "$$@"

# nginx (a master and 2 workers) under the shim: tools/server_demo.sh. The data stays in
# $(BUILD)/run (or $$COMET_DIR). `comet demo` is the engine's own demo.
run: PROBE_TARGET = $(BUILD)/lib/libcomet_preload.so
run: deps
	$(Q)$(MAKE) -s --no-print-directory -j$$(nproc) tools preload $(BUILD)/bin/comet_line_cost
	$(Q)set -- tools/server_demo.sh $(BUILD) $${COMET_DIR:-$(BUILD)/run}; $(PROBED)

# The engine's benchmarks, then the shim's cost per line (bench/preload/line_cost.sh).
bench: deps
	$(Q)$(MAKE) -s --no-print-directory -j$$(nproc) benches preload $(BUILD)/bin/comet_line_cost
	$(Q)$(BUILD)/bin/comet_bench $(BENCH_ARGS)
	$(Q)bench/preload/line_cost.sh $(BUILD)

# The tests again under AddressSanitizer and UndefinedBehaviorSanitizer, in build/asan.
sanitize: deps
	$(Q)$(MAKE) --no-print-directory -j$$(nproc) BUILD=build/asan OPT=-O1 \
	  EXTRA_CXXFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" build/asan/bin/comet_tests build/asan/bin/comet
	$(Q)COMET_BIN=$(abspath build/asan/bin/comet) UBSAN_OPTIONS=halt_on_error=1 \
	  build/asan/bin/comet_tests $(GTEST_ARGS)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
