/* The VM file descriptor and its interrupt plumbing; see kvm.h. */
#include "kvmcore/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kvmcore/layout.h"
#include "util/log.h"

#define KVM_DEV "/dev/kvm"

/* An ioctl that the kernel may interrupt: retried on EINTR/EAGAIN. */
static int kvm_ioctl(int fd, unsigned long req, void *arg)
{
    int ret;
    do {
        ret = ioctl(fd, req, arg);
    } while (ret < 0 && (errno == EINTR || errno == EAGAIN));
    return ret < 0 ? -errno : ret;
}

bool kvm_available(void)
{
    int fd = open(KVM_DEV, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    close(fd);
    return true;
}

static int check_ext(struct kvm_vm *vm, int cap)
{
    int ret = ioctl(vm->vm_fd >= 0 ? vm->vm_fd : vm->sys_fd, KVM_CHECK_EXTENSION, cap);
    return ret < 0 ? 0 : ret;
}

/* ---- GSI routing ------------------------------------------------------- */

static int commit_routes(struct kvm_vm *vm)
{
    size_t sz = sizeof(struct kvm_irq_routing) +
                vm->nr_routes * sizeof(struct kvm_irq_routing_entry);
    struct kvm_irq_routing *r = xzalloc(sz);
    r->nr = vm->nr_routes;
    memcpy(r->entries, vm->routes, vm->nr_routes * sizeof(struct kvm_irq_routing_entry));
    int ret = kvm_ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r);
    free(r);
    return ret < 0 ? ret : 0;
}

static void add_route(struct kvm_vm *vm, const struct kvm_irq_routing_entry *e)
{
    if (vm->nr_routes == vm->max_routes) {
        vm->max_routes = vm->max_routes ? vm->max_routes * 2 : 64;
        vm->routes = xrealloc(vm->routes, vm->max_routes * sizeof(*e));
    }
    vm->routes[vm->nr_routes++] = *e;
}

static void add_irqchip_route(struct kvm_vm *vm, unsigned gsi, unsigned chip, unsigned pin)
{
    struct kvm_irq_routing_entry e = {
        .gsi = gsi,
        .type = KVM_IRQ_ROUTING_IRQCHIP,
        .u.irqchip = { .irqchip = chip, .pin = pin },
    };
    add_route(vm, &e);
}

/*
 * The PC's wiring: ISA IRQs 0-15 go to the 8259 pair (IRQ 2 is the
 * cascade) and to the IOAPIC, IRQ 0 (the PIT) on IOAPIC pin 2 as every
 * PC's interrupt source override says; pins 16-23 are the IOAPIC's only.
 */
static int default_routes(struct kvm_vm *vm)
{
    for (unsigned gsi = 0; gsi < 16; gsi++) {
        if (gsi == 2) {
            continue;
        }
        add_irqchip_route(vm, gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                          gsi & 7);
    }
    for (unsigned gsi = 0; gsi < KVM_IOAPIC_PINS; gsi++) {
        if (gsi == 2) {
            continue;
        }
        add_irqchip_route(vm, gsi, KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi);
    }
    return commit_routes(vm);
}

int kvm_vm_msi_route_add(struct kvm_vm *vm, uint64_t addr, uint32_t data)
{
    pthread_mutex_lock(&vm->irq_lock);
    unsigned gsi;
    for (gsi = KVM_FIRST_MSI_GSI; gsi < vm->max_gsi && vm->gsi_used[gsi]; gsi++) {
    }
    if (gsi >= vm->max_gsi) {
        pthread_mutex_unlock(&vm->irq_lock);
        return -ENOSPC;
    }
    struct kvm_irq_routing_entry e = {
        .gsi = gsi,
        .type = KVM_IRQ_ROUTING_MSI,
        .u.msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
                   .data = data },
    };
    add_route(vm, &e);
    int ret = commit_routes(vm);
    if (ret < 0) {
        vm->nr_routes--;
    } else {
        vm->gsi_used[gsi] = 1;
        ret = (int)gsi;
    }
    pthread_mutex_unlock(&vm->irq_lock);
    return ret;
}

static struct kvm_irq_routing_entry *find_msi_route(struct kvm_vm *vm, unsigned gsi)
{
    for (unsigned i = 0; i < vm->nr_routes; i++) {
        if (vm->routes[i].gsi == gsi && vm->routes[i].type == KVM_IRQ_ROUTING_MSI) {
            return &vm->routes[i];
        }
    }
    return NULL;
}

int kvm_vm_msi_route_set(struct kvm_vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
    int ret = -ENOENT;
    pthread_mutex_lock(&vm->irq_lock);
    struct kvm_irq_routing_entry *e = find_msi_route(vm, gsi);
    if (e) {
        if (e->u.msi.address_lo == (uint32_t)addr &&
            e->u.msi.address_hi == (uint32_t)(addr >> 32) && e->u.msi.data == data) {
            ret = 0;
        } else {
            e->u.msi.address_lo = (uint32_t)addr;
            e->u.msi.address_hi = (uint32_t)(addr >> 32);
            e->u.msi.data = data;
            ret = commit_routes(vm);
        }
    }
    pthread_mutex_unlock(&vm->irq_lock);
    return ret;
}

void kvm_vm_msi_route_del(struct kvm_vm *vm, unsigned gsi)
{
    pthread_mutex_lock(&vm->irq_lock);
    struct kvm_irq_routing_entry *e = find_msi_route(vm, gsi);
    if (e) {
        *e = vm->routes[--vm->nr_routes];
        vm->gsi_used[gsi] = 0;
        int ret = commit_routes(vm);
        if (ret < 0) {
            log_debug("cannot remove MSI route %u: %s", gsi, strerror(-ret));
        }
    }
    pthread_mutex_unlock(&vm->irq_lock);
}

int kvm_vm_signal_msi(struct kvm_vm *vm, uint64_t addr, uint32_t data)
{
    struct kvm_msi msi = {
        .address_lo = (uint32_t)addr,
        .address_hi = (uint32_t)(addr >> 32),
        .data = data,
    };
    int ret = kvm_ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi);
    return ret < 0 ? ret : 0;
}

int kvm_vm_irq_line(struct kvm_vm *vm, unsigned gsi, int level)
{
    struct kvm_irq_level l = { .irq = gsi, .level = level };
    int ret = kvm_ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
    return ret < 0 ? ret : 0;
}

int kvm_vm_irqfd(struct kvm_vm *vm, int fd, unsigned gsi, bool assign)
{
    struct kvm_irqfd irqfd = {
        .fd = (uint32_t)fd,
        .gsi = gsi,
        .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
    };
    int ret = kvm_ioctl(vm->vm_fd, KVM_IRQFD, &irqfd);
    return ret < 0 ? ret : 0;
}

int kvm_vm_ioeventfd(struct kvm_vm *vm, int fd, uint64_t addr, unsigned len, bool mmio,
                     bool assign)
{
    struct kvm_ioeventfd io = {
        .addr = addr,
        .len = len,
        .fd = fd,
        .flags = (mmio ? 0 : KVM_IOEVENTFD_FLAG_PIO) |
                 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };
    int ret = kvm_ioctl(vm->vm_fd, KVM_IOEVENTFD, &io);
    return ret < 0 ? ret : 0;
}

/* ---- The VM ------------------------------------------------------------ */

int kvm_vm_add_memory(struct kvm_vm *vm, uint64_t gpa, uint64_t size, void *hva,
                      struct err *err)
{
    struct kvm_userspace_memory_region r = {
        .slot = vm->next_slot,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)hva,
    };
    int ret = kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
    if (ret < 0) {
        return err_set_errno(err, ret, "cannot give the VM memory at 0x%" PRIx64 " (%" PRIu64
                             " MiB)", gpa, size >> 20);
    }
    vm->next_slot++;
    return 0;
}

int kvm_vm_open(struct kvm_vm *vm, struct err *err)
{
    int ret;

    memset(vm, 0, sizeof(*vm));
    vm->vm_fd = -1;
    pthread_mutex_init(&vm->irq_lock, NULL);
    vm->sys_fd = open(KVM_DEV, O_RDWR | O_CLOEXEC);
    if (vm->sys_fd < 0) {
        ret = err_set_errno(err, -errno, "cannot open " KVM_DEV);
        goto fail;
    }
    ret = ioctl(vm->sys_fd, KVM_GET_API_VERSION, 0);
    if (ret != KVM_API_VERSION) {
        err_set(err, KVM_DEV " speaks KVM API version %d, not %d", ret, KVM_API_VERSION);
        ret = -ENOTSUP;
        goto fail;
    }
    static const struct { int cap; const char *name; } needed[] = {
        { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
        { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
        { KVM_CAP_PIT2, "KVM_CAP_PIT2" },
        { KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
        { KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
        { KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
        { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(needed); i++) {
        if (check_ext(vm, needed[i].cap) <= 0) {
            err_set(err, KVM_DEV " lacks %s, which spindle-vm needs", needed[i].name);
            ret = -ENOTSUP;
            goto fail;
        }
    }
    vm->vcpu_mmap_size = ioctl(vm->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
        ret = err_set_errno(err, -EINVAL, "KVM_GET_VCPU_MMAP_SIZE");
        goto fail;
    }
    do {
        vm->vm_fd = ioctl(vm->sys_fd, KVM_CREATE_VM, 0);
    } while (vm->vm_fd < 0 && errno == EINTR);
    if (vm->vm_fd < 0) {
        ret = err_set_errno(err, -errno, "KVM_CREATE_VM failed");
        goto fail;
    }
    vm->max_vcpus = check_ext(vm, KVM_CAP_MAX_VCPUS);
    if (vm->max_vcpus <= 0) {
        vm->max_vcpus = check_ext(vm, KVM_CAP_NR_VCPUS);
    }
    if (vm->max_vcpus <= 0) {
        vm->max_vcpus = 4;
    }
    vm->cap_ioeventfd_any_length = check_ext(vm, KVM_CAP_IOEVENTFD_ANY_LENGTH) > 0;
    vm->cap_immediate_exit = check_ext(vm, KVM_CAP_IMMEDIATE_EXIT) > 0;
    vm->cap_signal_msi = check_ext(vm, KVM_CAP_SIGNAL_MSI) > 0;
    vm->max_gsi = (unsigned)check_ext(vm, KVM_CAP_IRQ_ROUTING);
    if (vm->max_gsi <= KVM_FIRST_MSI_GSI) {
        vm->max_gsi = 1024;
    }
    vm->gsi_used = xzalloc(vm->max_gsi);

    /* Intel needs these for real mode; elsewhere the capability is absent. */
    if (check_ext(vm, KVM_CAP_SET_TSS_ADDR) > 0) {
        ret = ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR);
        if (ret < 0) {
            log_debug("KVM_SET_TSS_ADDR: %s", strerror(errno));
        }
    }
    if (check_ext(vm, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
        uint64_t addr = KVM_IDENTITY_MAP_ADDR;
        if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
            log_debug("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
        }
    }
    ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, NULL);
    if (ret < 0) {
        err_set_errno(err, ret, "KVM_CREATE_IRQCHIP failed");
        goto fail;
    }
    /* The dummy speaker port (0x61) gates PIT channel 2, which guests calibrate with. */
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit);
    if (ret < 0) {
        err_set_errno(err, ret, "KVM_CREATE_PIT2 failed");
        goto fail;
    }
    ret = default_routes(vm);
    if (ret < 0) {
        err_set_errno(err, ret, "KVM_SET_GSI_ROUTING failed");
        goto fail;
    }
    for (unsigned i = 0; i < 3; i++) {
        vm->chips0[i].chip_id = i;
        ret = kvm_ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &vm->chips0[i]);
        if (ret < 0) {
            err_set_errno(err, ret, "KVM_GET_IRQCHIP failed");
            goto fail;
        }
    }
    ret = kvm_ioctl(vm->vm_fd, KVM_GET_PIT2, &vm->pit0);
    if (ret < 0) {
        err_set_errno(err, ret, "KVM_GET_PIT2 failed");
        goto fail;
    }
    return 0;

fail:
    kvm_vm_close(vm);
    return ret < 0 ? ret : -EINVAL;
}

int kvm_vm_reset_chips(struct kvm_vm *vm, struct err *err)
{
    for (unsigned i = 0; i < 3; i++) {
        int ret = kvm_ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &vm->chips0[i]);
        if (ret < 0) {
            return err_set_errno(err, ret, "KVM_SET_IRQCHIP failed");
        }
    }
    int ret = kvm_ioctl(vm->vm_fd, KVM_SET_PIT2, &vm->pit0);
    return ret < 0 ? err_set_errno(err, ret, "KVM_SET_PIT2 failed") : 0;
}

void kvm_vm_close(struct kvm_vm *vm)
{
    if (vm->vm_fd >= 0) {
        close(vm->vm_fd);
    }
    if (vm->sys_fd >= 0) {
        close(vm->sys_fd);
    }
    vm->vm_fd = vm->sys_fd = -1;
    free(vm->routes);
    free(vm->gsi_used);
    vm->routes = NULL;
    vm->gsi_used = NULL;
    vm->nr_routes = vm->max_routes = 0;
    pthread_mutex_destroy(&vm->irq_lock);
}
