/*
 * spindle-vm's command line: QEMU-style lines are accepted into the right
 * structures, and every malformed one is refused with one sentence.
 */
#include "tests/unit/harness.h"

#include <wordexp.h>

#include "kvmcore/config.h"
#include "kvmcore/ram.h"

/* Parse a shell-quoted line; returns the parse result, fills c and err. */
static int parse(const char *line, struct kvm_config *c, struct err *err)
{
    wordexp_t w;
    char *full = xasprintf("spindle-vm %s", line);
    CU_ASSERT_EQUAL_FATAL(wordexp(full, &w, WRDE_NOCMD), 0);
    int ret = kvm_config_parse(c, (int)w.we_wordc, w.we_wordv, err);
    wordfree(&w);
    free(full);
    return ret;
}

static void accepted(const char *line)
{
    struct kvm_config c;
    struct err err = { 0 };
    if (parse(line, &c, &err) != 0) {
        printf("# refused: %s\n#   %s\n", line, err.msg);
        CU_FAIL("a good line was refused");
    }
    kvm_config_free(&c);
}

static void refused(const char *line, const char *what)
{
    struct kvm_config c;
    struct err err = { 0 };
    int ret = parse(line, &c, &err);
    CU_ASSERT(ret < 0);
    if (ret == 0 || !strstr(err.msg, what)) {
        printf("# line: %s\n#   expected '%s' in: %s\n", line, what, err.msg);
        CU_FAIL("wrong or no refusal");
    }
    kvm_config_free(&c);
}

static void test_full_line(void)
{
    struct kvm_config c;
    struct err err = { 0 };
    int ret = parse("-enable-kvm -machine q35,accel=kvm -cpu host,-xsave,+avx,pdpe1gb=off "
                    "-m 2G -smp 4 -kernel k.elf -initrd rd -append 'a b' -nographic "
                    "-no-reboot -object iothread,id=io0,poll-max-ns=0 "
                    "-object iothread,id=io1 "
                    "-blockdev driver=qcow2,node-name=n0,file.driver=file,file.filename=x "
                    "-drive if=none,id=d0,file=disk.raw,format=raw,cache=none,aio=io_uring "
                    "-device virtio-blk-pci,drive=d0,iothread=io0,num-queues=2,queue-size=128,id=vd0 "
                    "-device '{\"driver\":\"virtio-blk-pci\",\"drive\":\"n0\",\"num-queues\":2,"
                    "\"iothread-vq-mapping\":[{\"iothread\":\"io0\",\"vqs\":[0]},"
                    "{\"iothread\":\"io1\",\"vqs\":[1]}]}' "
                    "-device isa-debug-exit,iobase=0xf4,iosize=4", &c, &err);
    CU_ASSERT_EQUAL_FATAL(ret, 0);
    CU_ASSERT_EQUAL(c.ram_size, 2 * GiB);
    CU_ASSERT_EQUAL(c.smp, 4);
    CU_ASSERT_EQUAL(c.serial, KVM_SERIAL_STDIO);
    CU_ASSERT(c.no_reboot);
    CU_ASSERT_STRING_EQUAL(c.append, "a b");
    CU_ASSERT_EQUAL(c.cpu_model.nr, 3);
    CU_ASSERT_EQUAL(c.nr_iothreads, 2);
    CU_ASSERT_EQUAL(c.iothreads[0].opts.poll_max_ns, 0);
    CU_ASSERT_EQUAL(c.nr_blockdevs, 1);
    json_t *file = json_object_get(c.blockdevs[0].options, "file");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(file, "filename")), "x");
    CU_ASSERT_EQUAL(c.nr_drives, 1);
    CU_ASSERT_STRING_EQUAL(c.drives[0].cache, "none");
    CU_ASSERT_EQUAL(c.nr_devices, 3);
    const struct kvm_vblk_cfg *v = kvm_device_vblk_cfg(&c.devices[0]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_STRING_EQUAL(v->drive, "d0");
    CU_ASSERT_STRING_EQUAL(v->iothread, "io0");
    CU_ASSERT_EQUAL(v->num_queues, 2);
    CU_ASSERT_EQUAL(v->queue_size, 128);
    v = kvm_device_vblk_cfg(&c.devices[1]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(json_array_size(v->vq_mapping), 2);
    const struct kvm_debug_exit_cfg *de = c.devices[2].cfg;
    CU_ASSERT_EQUAL(de->iobase, 0xf4);
    CU_ASSERT_EQUAL(de->iosize, 4);
    kvm_config_free(&c);
}

static void test_accepted(void)
{
    accepted("-kernel k -m 512");
    accepted("-kernel k -m 512M -display none -serial none");
    accepted("-kernel k -m size=1.5G -M pc -accel kvm -nodefaults -no-user-config");
    accepted("-kernel k -smp cpus=2,sockets=1,cores=2,threads=1 -bios /x/qboot.rom");
    accepted("-kernel k -drive file=d.raw,if=virtio,format=raw");
    accepted("-kernel k -drive file=d.qcow2,if=none,id=x,file.locking=off -device "
             "virtio-blk-pci,drive=x,addr=0x5,write-cache=off,disable-legacy=on");
    accepted("-kernel k -blockdev '{\"driver\":\"null-co\",\"node-name\":\"n\"}' "
             "-device virtio-blk-pci,drive=n,iothread-vq-mapping='[{\"iothread\":\"io\"}]' "
             "-object iothread,id=io");
    accepted("-kernel k -serial file:/tmp/x -mem-path /dev/hugepages -mem-prealloc");
    accepted("-kernel k -object iothread,id=io0 -device virtio-scsi-pci,id=scsi0,iothread=io0,"
             "num_queues=4,virtqueue_size=256 -drive if=none,id=d0,file=a "
             "-drive if=none,id=d1,file=b -device scsi-hd,drive=d0,bus=scsi0.0,scsi-id=0,lun=0 "
             "-device scsi-hd,drive=d1,lun=1");
}

static void test_refused(void)
{
    refused("-m 512", "no kernel");
    refused("-kernel k -frobnicate", "-frobnicate: unknown option");
    refused("-kernel k stray", "not an option");
    refused("-kernel", "requires an argument");
    refused("-kernel k -m lots", "not a memory size");
    refused("-kernel k -m 512,maxmem=4G", "hotplug");
    refused("-kernel k -smp 0", "between 1 and");
    refused("-kernel k -smp 4,sockets=3", "do not match");
    refused("-kernel k -cpu qemu64", "only 'host'");
    refused("-kernel k -cpu host,-nosuchfeature", "unknown CPU feature 'nosuchfeature'");
    refused("-kernel k -cpu host,avx=maybe", "takes on or off");
    refused("-kernel k -machine virt", "not supported");
    refused("-kernel k -machine q35,accel=tcg", "KVM only");
    refused("-kernel k -accel tcg", "KVM only");
    refused("-kernel k -serial pty", "not supported");
    refused("-kernel k -display gtk", "only '-display none'");
    refused("-kernel k -object memory-backend-ram,id=m", "only iothread");
    refused("-kernel k -object iothread", "'id' is required");
    refused("-kernel k -object iothread,id=a -object iothread,id=a", "used twice");
    refused("-kernel k -object iothread,id=a,poll-max-ns=x", "takes a number");
    refused("-kernel k -device e1000", "not a device spindle-vm has");
    refused("-kernel k -device isa-debug-exit,iobase=0x10000", "between 0 and 65535");
    refused("-kernel k -device isa-debug-exit,foo=1", "unknown property 'foo'");
    refused("-kernel k -device virtio-blk-pci", "'drive' is required");
    refused("-kernel k -device virtio-blk-pci,drive=nope", "neither a -drive id");
    refused("-kernel k -drive file=a,if=none,id=d -device virtio-blk-pci,drive=d,foo=1",
            "-device virtio-blk-pci: unknown property 'foo'");
    refused("-kernel k -drive file=a,if=none,id=d -device virtio-blk-pci,drive=d,queue-size=100",
            "not a power of 2");
    refused("-kernel k -drive file=a,if=none,id=d -device virtio-blk-pci,drive=d,queue-size=4096",
            "between 2 and 1024");
    refused("-kernel k -drive file=a,if=none,id=d -device virtio-blk-pci,drive=d,num-queues=0",
            "between 1 and 1024");
    refused("-kernel k -drive file=a,if=none,id=d -device virtio-blk-pci,drive=d,iothread=io9",
            "not an -object iothread");
    refused("-kernel k -drive file=a,if=none,id=d -device virtio-blk-pci,drive=d,addr=40",
            "not a PCI slot");
    refused("-kernel k -drive file=a,if=none,id=d -device virtio-blk-pci,drive=d "
            "-device virtio-blk-pci,drive=d", "already used by another device");
    refused("-kernel k -drive file=a,if=none,id=d -object iothread,id=io "
            "-device virtio-blk-pci,drive=d,iothread=io,iothread-vq-mapping='[{\"iothread\":\"io\"}]'",
            "cannot both be given");
    refused("-kernel k -drive file=a,if=none,id=d -object iothread,id=io -device "
            "virtio-blk-pci,drive=d,num-queues=2,iothread-vq-mapping.0.iothread=io,"
            "iothread-vq-mapping.0.vqs.0=0",
            "leaves queue 1 without an iothread");
    refused("-kernel k -drive file=a,if=none,id=d -object iothread,id=io -device "
            "'{\"driver\":\"virtio-blk-pci\",\"drive\":\"d\",\"num-queues\":2,"
            "\"iothread-vq-mapping\":[{\"iothread\":\"io\",\"vqs\":[0,0,1]}]}'",
            "assigns queue 0 twice");
    refused("-kernel k -drive file=a,if=none,id=d -device "
            "virtio-blk-pci,drive=d,iothread-vq-mapping='[{\"iothread\":\"zz\"}]'",
            "names iothread 'zz'");
    refused("-kernel k -drive file=a,if=none,id=d -device virtio-blk-pci,drive=d,iothread-vq-mapping=[1",
            "not valid JSON");
    refused("-kernel k -drive file=a", "if=ide (the default) is not supported");
    refused("-kernel k -drive if=none,file=a", "needs an id");
    refused("-kernel k -drive if=none,id=d", "'file' is required");
    refused("-kernel k -drive if=none,id=d,file=a,cache=sometimes", "cache=sometimes is not one of");
    refused("-kernel k -drive if=none,id=d,file=a,bogus=1", "unknown property 'bogus'");
    refused("-kernel k -drive if=none,id=d,file=a -drive if=none,id=d,file=b", "already in use");
    refused("-kernel k -blockdev driver=raw", "'node-name' is required");
    refused("-kernel k -blockdev node-name=x", "'driver' is required");
    refused("-kernel k -blockdev '{\"driver\":' ", "Invalid JSON at line 1");
    refused("-kernel k -blockdev driver=raw,node-name=a,file=x,file.filename=y",
            "both a value and a prefix");
    refused("-kernel k -device isa-debug-exit,iobase=1,iobase=2", "Duplicate parameter 'iobase'");
    refused("-kernel k -qmp unix:/tmp/q,server", "waiting for a client is not supported");
    refused("-kernel k -qmp unix:/tmp/q,server=off,wait=off", "only a server socket");
    refused("-kernel k -qmp unix:/tmp/q,wait=off", "only a server socket");
    refused("-kernel k -qmp tcp:localhost:4444,server,nowait", "only UNIX sockets");
    refused("-kernel k -qmp unix:,server,nowait", "the socket path is empty");
    refused("-kernel k -qmp unix:/tmp/q,server,nowait,telnet", "unknown property 'telnet'");
    refused("-kernel k -drive if=none,id=d0,file=a -device scsi-hd,drive=d0",
            "there is no virtio-scsi-pci");
    refused("-kernel k -device virtio-scsi-pci,id=s0 -device virtio-scsi-pci,id=s1 "
            "-drive if=none,id=d0,file=a -device scsi-hd,drive=d0", "more than one");
    refused("-kernel k -device virtio-scsi-pci,id=s0 -drive if=none,id=d0,file=a "
            "-device scsi-hd,drive=d0,bus=s1.0", "bus 's1.0' is not the bus");
    refused("-kernel k -device virtio-scsi-pci,id=s0 -drive if=none,id=d0,file=a "
            "-drive if=none,id=d1,file=b -device scsi-hd,drive=d0 -device scsi-hd,drive=d1",
            "scsi-id 0 lun 0 is already taken");
    refused("-kernel k -device virtio-scsi-pci,id=s0 -drive if=none,id=d0,file=a "
            "-device scsi-hd,drive=d0 -device virtio-blk-pci,drive=d0", "already used by another");
    refused("-kernel k -device virtio-scsi-pci,virtqueue_size=100", "not a power of 2");
    refused("-kernel k -device virtio-scsi-pci,num-queues=2", "unknown property 'num-queues'");
    refused("-kernel k -device virtio-scsi-pci -drive if=none,id=d0,file=a "
            "-device scsi-hd,drive=d0,lun=20000", "between 0 and 16383");
}

/* -qmp in both spellings (",," is a comma in the path), several of them, and -S. */
static void test_qmp(void)
{
    struct kvm_config c;
    struct err err = { 0 };
    int ret = parse("-kernel k -S -qmp unix:/tmp/a.sock,server=on,wait=off "
                    "-qmp unix:/tmp/b,,c.sock,server,nowait", &c, &err);
    CU_ASSERT_EQUAL_FATAL(ret, 0);
    CU_ASSERT_TRUE(c.start_paused);
    CU_ASSERT_EQUAL_FATAL(c.nr_qmp, 2);
    CU_ASSERT_STRING_EQUAL(c.qmp[0], "/tmp/a.sock");
    CU_ASSERT_STRING_EQUAL(c.qmp[1], "/tmp/b,c.sock");
    kvm_config_free(&c);
    ret = parse("-kernel k", &c, &err);
    CU_ASSERT_EQUAL(ret, 0);
    CU_ASSERT_FALSE(c.start_paused);
    CU_ASSERT_EQUAL(c.nr_qmp, 0);
    kvm_config_free(&c);
}

static void test_mem_size(void)
{
    CU_ASSERT_EQUAL(kvm_parse_mem_size("512"), 512 * MiB);
    CU_ASSERT_EQUAL(kvm_parse_mem_size("512M"), 512 * MiB);
    CU_ASSERT_EQUAL(kvm_parse_mem_size("2G"), 2 * GiB);
    CU_ASSERT_EQUAL(kvm_parse_mem_size("1.5G"), 3 * GiB / 2);
    CU_ASSERT_EQUAL(kvm_parse_mem_size("65536k"), 64 * MiB);
    CU_ASSERT_EQUAL(kvm_parse_mem_size("1GiB"), GiB);
    CU_ASSERT_EQUAL(kvm_parse_mem_size(""), 0);
    CU_ASSERT_EQUAL(kvm_parse_mem_size("-5"), 0);
    CU_ASSERT_EQUAL(kvm_parse_mem_size("12Q"), 0);
    CU_ASSERT_EQUAL(kvm_parse_mem_size("1e30G"), 0);
}

static void test_opts_escaping(void)
{
    struct kvm_opts o;
    struct err err = { 0 };
    CU_ASSERT_EQUAL(kvm_opts_parse(&o, "drv,file=a,,b,x.y=1,x.z=2", "driver", "t", &err), 0);
    CU_ASSERT_STRING_EQUAL(kvm_opts_get(&o, "driver"), "drv");
    CU_ASSERT_STRING_EQUAL(kvm_opts_get(&o, "file"), "a,b");
    CU_ASSERT_EQUAL(kvm_opts_check_unused(&o, "t", &err), -EINVAL);
    CU_ASSERT_STRING_EQUAL(err.msg, "t: unknown property 'x.y'");
    CU_ASSERT_PTR_NOT_NULL(kvm_opts_get_json(&o, "x"));
    CU_ASSERT_EQUAL(kvm_opts_check_unused(&o, "t", NULL), 0);
    kvm_opts_free(&o);
    /* JSON keeps its types; they read as text. */
    CU_ASSERT_EQUAL(kvm_opts_parse(&o, "{\"driver\":\"d\",\"n\":4,\"b\":true}", "driver", "t",
                                   &err), 0);
    CU_ASSERT_STRING_EQUAL(kvm_opts_get(&o, "n"), "4");
    CU_ASSERT_STRING_EQUAL(kvm_opts_get(&o, "b"), "on");
    kvm_opts_free(&o);
    err_clear(&err);
    CU_ASSERT(kvm_opts_parse(&o, "=v", NULL, "t", &err) < 0);
    CU_ASSERT(strncmp(err.msg, "t: ", 3) == 0);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("config", NULL, NULL);
    CU_add_test(s, "full_line", test_full_line);
    CU_add_test(s, "accepted", test_accepted);
    CU_add_test(s, "refused", test_refused);
    CU_add_test(s, "qmp", test_qmp);
    CU_add_test(s, "mem_size", test_mem_size);
    CU_add_test(s, "opts_escaping", test_opts_escaping);
}
