/* Kernel loading: reading files, choosing the loader, shared placement. */
#include "kvmcore/boot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmcore/layout.h"

int kvm_boot_read_file(const char *path, const char *what, struct kvm_boot_image *img,
                       struct err *err)
{
    struct stat st;
    memset(img, 0, sizeof(*img));
    img->name = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return err_set_errno(err, -errno, "%s %s", what, path);
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        err_set(err, "%s %s: not a regular file", what, path);
        return -EINVAL;
    }
    if ((uint64_t)st.st_size > KVM_BOOT_FILE_MAX) {
        close(fd);
        err_set(err, "%s %s: %lld bytes is larger than the %llu MiB spindle-vm loads", what,
                path, (long long)st.st_size, KVM_BOOT_FILE_MAX >> 20);
        return -EFBIG;
    }
    uint8_t *buf = xmalloc((size_t)st.st_size);
    int ret = full_pread(fd, buf, (size_t)st.st_size, 0);
    close(fd);
    if (ret < 0) {
        free(buf);
        return err_set_errno(err, ret, "%s %s: cannot read it", what, path);
    }
    img->data = buf;
    img->len = (size_t)st.st_size;
    return 0;
}

void kvm_boot_image_free(struct kvm_boot_image *img)
{
    free((void *)img->data);
    img->data = NULL;
    img->len = 0;
}

int kvm_boot_load(struct kvm_ram *ram, const struct kvm_boot_opts *o,
                  struct vcpu_boot_state *bs, struct kvm_boot_info *info, struct err *err)
{
    const struct kvm_boot_image *k = &o->kernel;
    if (k->len >= 4 && !memcmp(k->data, "\x7f" "ELF", 4)) {
        return kvm_boot_pvh(ram, o, bs, info, err);
    }
    if (k->len >= 0x206 && !memcmp(k->data + 0x202, "HdrS", 4)) {
        return kvm_boot_bzimage(ram, o, bs, info, err);
    }
    err_set(err, "kernel %s: neither an ELF (with a PVH entry note) nor a Linux bzImage",
            k->name);
    return -EINVAL;
}

int kvm_boot_put_cmdline(struct kvm_ram *ram, const struct kvm_boot_opts *o, size_t max,
                         uint64_t *addr, struct err *err)
{
    const char *cmdline = o->cmdline ? o->cmdline : "";
    size_t len = strlen(cmdline) + 1;
    if (len > max || len > KVM_BOOT_CMDLINE_MAX) {
        err_set(err, "kernel %s: the command line of %zu bytes is longer than the %zu the "
                "kernel accepts", o->kernel.name, len - 1,
                (size_t)MIN((uint64_t)max, KVM_BOOT_CMDLINE_MAX) - 1);
        return -E2BIG;
    }
    char *p = kvm_ram_ptr(ram, KVM_BOOT_CMDLINE, len);
    if (!p) {
        err_set(err, "no RAM for the command line");
        return -ENOMEM;
    }
    memcpy(p, cmdline, len);
    *addr = KVM_BOOT_CMDLINE;
    return 0;
}

int kvm_boot_put_initrd(struct kvm_ram *ram, const struct kvm_boot_opts *o, uint64_t limit,
                        uint64_t avoid_end, uint64_t *addr, struct err *err)
{
    const struct kvm_boot_image *i = &o->initrd;
    *addr = 0;
    if (!i->data || !i->len) {
        return 0;
    }
    limit = MIN(limit, ram->low_size);
    uint64_t size = ALIGN_UP((uint64_t)i->len, 4096);
    if (size > limit || ALIGN_DOWN(limit - size, 4096) < ALIGN_UP(avoid_end, 4096)) {
        err_set(err, "initrd %s: %zu bytes do not fit in guest RAM between the kernel's end "
                "(0x%" PRIx64 ") and 0x%" PRIx64 "; give the VM more memory (-m)", i->name,
                i->len, avoid_end, limit);
        return -ENOMEM;
    }
    uint64_t a = ALIGN_DOWN(limit - size, 4096);
    void *p = kvm_ram_ptr(ram, a, i->len);
    if (!p) {
        err_set(err, "initrd %s: no RAM at 0x%" PRIx64, i->name, a);
        return -ENOMEM;
    }
    memcpy(p, i->data, i->len);
    *addr = a;
    return 0;
}
