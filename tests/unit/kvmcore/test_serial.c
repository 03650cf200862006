/* The 16550A: transmit to an fd, receive, interrupts, loopback, divisor latch. */
#include "tests/unit/harness.h"

#include <fcntl.h>
#include <unistd.h>

#include "kvmcore/serial.h"

static uint8_t rd(struct kvm_serial *s, unsigned reg)
{
    return (uint8_t)kvm_serial_ops.read(s, reg, 1);
}

static void wr(struct kvm_serial *s, unsigned reg, uint8_t v)
{
    kvm_serial_ops.write(s, reg, v, 1);
}

static void test_transmit(void)
{
    struct kvm_serial s;
    struct err err = { 0 };
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    CU_ASSERT_EQUAL(kvm_serial_init(&s, NULL, NULL, 0x3f8, 4, fds[1], -1, &err), 0);
    CU_ASSERT(rd(&s, 5) & 0x60);                       /* THRE | TEMT */
    wr(&s, 0, 'h');
    wr(&s, 0, 'i');
    char buf[4] = { 0 };
    CU_ASSERT_EQUAL(read(fds[0], buf, 2), 2);
    CU_ASSERT_STRING_EQUAL(buf, "hi");
    CU_ASSERT_EQUAL(s.tx_bytes, 2);
    /* The divisor latch does not transmit. */
    wr(&s, 3, 0x80);
    wr(&s, 0, 0x01);
    wr(&s, 1, 0x00);
    CU_ASSERT_EQUAL(rd(&s, 0), 0x01);
    wr(&s, 3, 0x03);
    CU_ASSERT_EQUAL(s.tx_bytes, 2);
    /* The scratch register keeps what is written. */
    wr(&s, 7, 0x5a);
    CU_ASSERT_EQUAL(rd(&s, 7), 0x5a);
    kvm_serial_cleanup(&s);
    close(fds[0]);
    close(fds[1]);
}

static void test_receive_and_interrupts(void)
{
    struct kvm_serial s;
    struct err err = { 0 };
    CU_ASSERT_EQUAL(kvm_serial_init(&s, NULL, NULL, 0x3f8, 4, -1, -1, &err), 0);
    CU_ASSERT_EQUAL(rd(&s, 2) & 0x0f, 0x01);           /* nothing pending */
    wr(&s, 2, 0x07);                                   /* FIFOs on */
    CU_ASSERT_EQUAL(rd(&s, 2) & 0xc0, 0xc0);
    wr(&s, 1, 0x01);                                   /* RDI */
    kvm_serial_receive(&s, (const uint8_t *)"ab", 2);
    CU_ASSERT(rd(&s, 5) & 0x01);
    CU_ASSERT_EQUAL(rd(&s, 2) & 0x0f, 0x04);
    CU_ASSERT(s.irq_level);
    CU_ASSERT_EQUAL(rd(&s, 0), 'a');
    CU_ASSERT_EQUAL(rd(&s, 0), 'b');
    CU_ASSERT_FALSE(rd(&s, 5) & 0x01);
    CU_ASSERT_FALSE(s.irq_level);
    /* THRE interrupt: raised on enable, cleared by reading IIR. */
    wr(&s, 1, 0x02);
    CU_ASSERT(s.irq_level);
    CU_ASSERT_EQUAL(rd(&s, 2) & 0x0f, 0x02);
    CU_ASSERT_EQUAL(rd(&s, 2) & 0x0f, 0x01);
    CU_ASSERT_FALSE(s.irq_level);
    /* OUT2 gates the line. */
    wr(&s, 4, 0x00);
    kvm_serial_receive(&s, (const uint8_t *)"c", 1);
    wr(&s, 1, 0x01);
    CU_ASSERT_FALSE(s.irq_level);
    wr(&s, 4, 0x08);
    CU_ASSERT(s.irq_level);
    kvm_serial_cleanup(&s);
}

static void count_quit(void *opaque)
{
    (*(int *)opaque)++;
}

static void test_loopback_and_console(void)
{
    struct kvm_serial s;
    struct err err = { 0 };
    CU_ASSERT_EQUAL(kvm_serial_init(&s, NULL, NULL, 0x3f8, 4, -1, -1, &err), 0);
    /* Linux's probe: loopback with RTS and OUT2 reads back CTS and DCD. */
    wr(&s, 4, 0x1a);
    CU_ASSERT_EQUAL(rd(&s, 6) & 0xf0, 0x90);
    wr(&s, 0, 'z');
    CU_ASSERT_EQUAL(rd(&s, 0), 'z');
    CU_ASSERT_EQUAL(s.tx_bytes, 0);
    wr(&s, 4, 0x08);
    /* Console escapes: ^A ^A is one ^A, ^A x quits. */
    s.in_is_console = true;
    int quits = 0;
    s.quit = count_quit;
    s.quit_opaque = &quits;
    kvm_serial_receive(&s, (const uint8_t *)"\x01\x01q", 3);
    CU_ASSERT_EQUAL(rd(&s, 0), 0x01);
    CU_ASSERT_EQUAL(rd(&s, 0), 'q');
    CU_ASSERT_FALSE(rd(&s, 5) & 0x01);
    kvm_serial_receive(&s, (const uint8_t *)"\x01x", 2);
    CU_ASSERT_FALSE(rd(&s, 5) & 0x01);
    CU_ASSERT_EQUAL(quits, 1);
    kvm_serial_cleanup(&s);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("serial", NULL, NULL);
    CU_add_test(s, "transmit", test_transmit);
    CU_add_test(s, "receive_and_interrupts", test_receive_and_interrupts);
    CU_add_test(s, "loopback_and_console", test_loopback_and_console);
}
