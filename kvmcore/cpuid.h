/*
 * The guest's CPUID: what KVM supports (KVM_GET_SUPPORTED_CPUID), minus the
 * features `-cpu host,-name` hides, with each vCPU's APIC ID and the
 * topology (N cores in one socket) filled in.
 */
#ifndef SPINDLE_KVMCORE_CPUID_H
#define SPINDLE_KVMCORE_CPUID_H

#include "kvmcore/kvm.h"
#include "util/error.h"

#define KVM_CPU_MAX_TWEAKS 64

/* The parsed -cpu option. */
struct kvm_cpu_model {
    unsigned nr;
    struct {
        unsigned feature;            /* index into the name table */
        bool on;
    } tweaks[KVM_CPU_MAX_TWEAKS];
};

/*
 * Parse "-cpu host[,-feat][,+feat][,feat=on|off]".  Only "host" (and
 * "max", its alias here) name a model.  Unknown features are an error.
 */
int kvm_cpu_model_parse(struct kvm_cpu_model *m, const char *spec, struct err *err);

/* The VM-wide CPUID, before per-vCPU fix-ups.  Free with free(). */
struct kvm_cpuid2 *kvm_cpuid_build(struct kvm_vm *vm, const struct kvm_cpu_model *m,
                                   unsigned nr_vcpus, struct err *err);

/* A copy of base for vCPU index (its APIC ID), ready for KVM_SET_CPUID2. */
struct kvm_cpuid2 *kvm_cpuid_for_vcpu(const struct kvm_cpuid2 *base, unsigned index,
                                      unsigned nr_vcpus);

/* The entry for (function, index), or NULL. */
struct kvm_cpuid_entry2 *kvm_cpuid_find(struct kvm_cpuid2 *c, uint32_t function,
                                        uint32_t index);

/* Whether feature name is set in c (for tests); -ENOENT for an unknown name. */
int kvm_cpuid_has(struct kvm_cpuid2 *c, const char *name);

#endif
