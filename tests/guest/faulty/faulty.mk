# tests/guest/faulty/faulty.mk: build/guest/faulty.elf, a PVH guest that
# misbehaves on purpose (see faulty.S), for spindle-vm's integration tests.
FAULTY_ELF := $(BUILD)/guest/faulty.elf

.PHONY: faulty
faulty: $(FAULTY_ELF)

$(FAULTY_ELF): tests/guest/faulty/faulty.S tests/guest/faulty/faulty.ld
	@mkdir -p $(dir $@)
	@$(if $(filter 0,$(V)),echo "  LD      $@")
	$(Q)$(CC) -nostdlib -static -no-pie -fno-pic -Wl,--build-id=none \
		-Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -Wl,-T,tests/guest/faulty/faulty.ld -o $@ $<
