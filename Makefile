# spindle: one non-recursive build.
#
#   make            build/libspindle.a and the programs in build/
#   make test       build everything, run every unit suite and integration script
#   make check-asan the unit suites and integration scripts built with ASan + UBSan
#   make run        the main job (see README.md)
#   make bench      the benchmarks in bench/ (not tests)
#
# Every folder of the library is a part; every .c in it is linked into
# libspindle.a.  Every folder under tools/ is a program.  Every
# tests/unit/<part>/test_<module>.c is one CUnit suite binary.

BUILD    ?= build
CC       ?= gcc
SAN      ?=
V        ?= 0

PKGS     := liburing zlib libzstd libcrypto jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -laio
CUNIT_LIBS := $(shell pkg-config --libs cunit 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes \
            -Wold-style-definition -Wno-unused-parameter -Wvla -Wshadow=local \
            -Wformat=2 -Wno-format-nonliteral -Wpointer-arith -Wundef
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -pthread -fno-strict-aliasing -D_GNU_SOURCE \
            -D_FILE_OFFSET_BITS=64 $(WARN) -I. $(PKG_CFLAGS)
LDLIBS   := $(PKG_LIBS) -pthread -lm

ifneq ($(SAN),)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined -DSPINDLE_SANITIZE=1
LDFLAGS  += -fsanitize=address,undefined
endif

ifeq ($(V),0)
Q := @
else
Q :=
endif

PARTS    := util block qcow2 blockjobs dataplane vhost-scsi-target kvmcore monitor
LIB_SRCS := $(foreach p,$(PARTS),$(wildcard $(p)/*.c))
LIB_ASMS := $(foreach p,$(PARTS),$(wildcard $(p)/*.S))
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) \
            $(patsubst %.S,$(BUILD)/obj/%.o,$(LIB_ASMS))
LIB      := $(BUILD)/libspindle.a

PROGS    := $(patsubst tools/%/,%,$(sort $(dir $(wildcard tools/*/*.c))))
PROG_BINS := $(addprefix $(BUILD)/,$(PROGS))

UNIT_SRCS := $(wildcard tests/unit/*/test_*.c)
UNIT_BINS := $(patsubst %.c,$(BUILD)/%,$(UNIT_SRCS))
UNIT_HARNESS := $(BUILD)/obj/tests/unit/harness.o

.SECONDARY:
.PHONY: all deps test check-unit check-integration check-asan check-valgrind run bench clean guest
.DEFAULT_GOAL := all

all: deps
	$(Q)$(MAKE) --no-print-directory build-all

.PHONY: build-all
build-all: $(LIB) $(PROG_BINS) $(UNIT_BINS) guest vmtest faulty

deps:
	$(Q)scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(filter 0,$(V)),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/obj/%.o: %.S
	@mkdir -p $(dir $@)
	@$(if $(filter 0,$(V)),echo "  AS      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(filter 0,$(V)),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# Drivers register themselves from constructors, so every object of the
# library must be linked even if nothing names it.
LINK_LIB := -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive

# A program is every .c in its folder, linked against the library.
define prog_rule
$(BUILD)/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/$(1)/*.c)) $(LIB)
	@$$(if $$(filter 0,$$(V)),echo "  LD      $$@")
	$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$(filter %.o,$$^) $$(LINK_LIB) $$(LDLIBS)
endef
$(foreach p,$(PROGS),$(eval $(call prog_rule,$(p))))

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(UNIT_HARNESS) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(filter 0,$(V)),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_LIB) $(LDLIBS) $(CUNIT_LIBS)

# The freestanding test guest has its own flags; see tests/guest/blkbench.
-include tests/guest/guest.mk
# spindle-vm with test doubles, for the VM integration tests; see tests/vmm.
-include tests/vmm/vmm.mk
-include tests/guest/faulty/faulty.mk

test: deps
	$(Q)$(MAKE) --no-print-directory build-all
	$(Q)BUILD=$(BUILD) tests/run.sh

check-unit: build-all
	$(Q)BUILD=$(BUILD) tests/run.sh --unit

check-integration: build-all
	$(Q)BUILD=$(BUILD) tests/run.sh --integration

# The same suites, built with AddressSanitizer and UndefinedBehaviorSanitizer.
check-asan: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SAN=1 build-all
	$(Q)BUILD=build-asan SPINDLE_SANITIZE=1 tests/run.sh

# The unit suites under valgrind's memcheck.
check-valgrind: deps
	$(Q)$(MAKE) --no-print-directory build-all
	$(Q)BUILD=$(BUILD) VALGRIND=1 tests/run.sh --unit

run: deps
	$(Q)$(MAKE) --no-print-directory build-all
	$(Q)BUILD=$(BUILD) scripts/run.sh

bench: deps
	$(Q)$(MAKE) --no-print-directory build-all
	$(Q)BUILD=$(BUILD) bench/run-all.sh

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
