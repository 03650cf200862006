# tests/vmm/vmm.mk: spindle-vm-test, spindle-vm with test doubles (tests/vmm/*.c).
VMTEST_SRCS := $(wildcard tests/vmm/*.c)
VMTEST_BIN  := $(BUILD)/tests/spindle-vm-test

.PHONY: vmtest
vmtest: $(VMTEST_BIN)

$(VMTEST_BIN): $(patsubst %.c,$(BUILD)/obj/%.o,$(VMTEST_SRCS)) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(filter 0,$(V)),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
