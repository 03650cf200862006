# tests/guest/guest.mk: the freestanding blkbench guest (see tests/guest/README.md).
#
# Included by the top-level Makefile.  blkbench runs on bare (virtual)
# hardware, so it gets its own flags: no libc, no PIC, no stack protector, no
# red zone (exceptions push onto the ring-0 stack's live frame), and
# -mgeneral-regs-only so no SSE instruction ever reaches KVM's instruction
# emulator or needs CR4.OSFXSR.  -fno-tree-loop-distribute-patterns keeps GCC
# from turning lib.c's memset loop into a call to memset.

GUEST_DIR    := tests/guest/blkbench
GUEST_OUT    := $(BUILD)/guest
GUEST_ELF    := $(GUEST_OUT)/blkbench.elf
GUEST_SRCS   := $(wildcard $(GUEST_DIR)/*.c)
GUEST_ASMS   := $(wildcard $(GUEST_DIR)/*.S)
GUEST_OBJS   := $(patsubst $(GUEST_DIR)/%.c,$(GUEST_OUT)/obj/%.o,$(GUEST_SRCS)) \
                $(patsubst $(GUEST_DIR)/%.S,$(GUEST_OUT)/obj/%.o,$(GUEST_ASMS))
GUEST_LDS    := $(GUEST_DIR)/blkbench.ld

GUEST_CFLAGS := -std=gnu11 -O2 -g $(WARN) -ffreestanding \
                -nostdlib -static -fno-pic -fno-pie -fno-stack-protector \
                -mno-red-zone -mgeneral-regs-only -fno-strict-aliasing \
                -fno-asynchronous-unwind-tables -fno-omit-frame-pointer \
                -fno-tree-loop-distribute-patterns \
                -I$(GUEST_DIR)
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none \
                 -Wl,-z,max-page-size=4096 -Wl,-z,noexecstack -Wl,-T,$(GUEST_LDS)

.PHONY: guest
guest: $(GUEST_ELF)

$(GUEST_ELF): $(GUEST_OBJS) $(GUEST_LDS)
	@$(if $(filter 0,$(V)),echo "  LD      $@")
	$(Q)$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJS) -lgcc

$(GUEST_OUT)/obj/%.o: $(GUEST_DIR)/%.c
	@mkdir -p $(dir $@)
	@$(if $(filter 0,$(V)),echo "  CC      $<")
	$(Q)$(CC) $(GUEST_CFLAGS) -MMD -MP -c -o $@ $<

$(GUEST_OUT)/obj/%.o: $(GUEST_DIR)/%.S
	@mkdir -p $(dir $@)
	@$(if $(filter 0,$(V)),echo "  AS      $<")
	$(Q)$(CC) $(GUEST_CFLAGS) -MMD -MP -c -o $@ $<

-include $(wildcard $(GUEST_OUT)/obj/*.d)
