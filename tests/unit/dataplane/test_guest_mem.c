/* guest_mem: lookups stay inside one region, whatever the guest asks for. */
#include "tests/unit/harness.h"

#include "dataplane/guest-mem.h"

static char low[4096], high[8192];

static void setup(struct guest_mem *m)
{
    struct err err = { 0 };
    guest_mem_init(m);
    struct guest_mem_region a = { .gpa = 0, .size = sizeof(low), .hva = low, .fd = -1 };
    struct guest_mem_region b = { .gpa = 0x10000, .size = sizeof(high), .hva = high, .fd = -1 };
    CU_ASSERT_EQUAL(guest_mem_add(m, &a, &err), 0);
    CU_ASSERT_EQUAL(guest_mem_add(m, &b, &err), 0);
}

static void test_inside(void)
{
    struct guest_mem m;
    setup(&m);
    CU_ASSERT_PTR_EQUAL(guest_mem_map(&m, 0, 4096), low);
    CU_ASSERT_PTR_EQUAL(guest_mem_map(&m, 100, 10), low + 100);
    CU_ASSERT_PTR_EQUAL(guest_mem_map(&m, 0x10000 + 8191, 1), high + 8191);
    CU_ASSERT_PTR_EQUAL(guest_mem_map(&m, 0x10000, 0), high);
}

static void test_out_of_range(void)
{
    struct guest_mem m;
    setup(&m);
    CU_ASSERT_PTR_NULL(guest_mem_map(&m, 4096, 1));            /* the gap */
    CU_ASSERT_PTR_NULL(guest_mem_map(&m, 0x10000 + 8192, 1));  /* past the end */
    CU_ASSERT_PTR_NULL(guest_mem_map(&m, 0xffffffffffffff00ULL, 16));
}

static void test_crossing(void)
{
    struct guest_mem m;
    setup(&m);
    CU_ASSERT_PTR_NULL(guest_mem_map(&m, 4000, 200));          /* runs off region 0 */
    CU_ASSERT_PTR_NULL(guest_mem_map(&m, 0x10000 + 8000, 193));
    CU_ASSERT_PTR_NOT_NULL(guest_mem_map(&m, 0x10000 + 8000, 192));
}

static void test_overflow(void)
{
    struct guest_mem m;
    setup(&m);
    /* gpa + len wraps to a small number: must not pass as "inside". */
    CU_ASSERT_PTR_NULL(guest_mem_map(&m, 16, UINT64_MAX));
    CU_ASSERT_PTR_NULL(guest_mem_map(&m, 16, UINT64_MAX - 15));
    CU_ASSERT_PTR_NULL(guest_mem_map(&m, 0x10000, (uint64_t)1 << 63));
}

static void test_add_refused(void)
{
    struct guest_mem m;
    struct err err = { 0 };
    setup(&m);
    struct guest_mem_region overlap = { .gpa = 0x800, .size = 0x1000, .hva = low, .fd = -1 };
    CU_ASSERT_EQUAL(guest_mem_add(&m, &overlap, &err), -EEXIST);
    CU_ASSERT(strstr(err.msg, "overlaps") != NULL);
    err_clear(&err);
    struct guest_mem_region wrap = { .gpa = UINT64_MAX - 10, .size = 100, .hva = low, .fd = -1 };
    CU_ASSERT_EQUAL(guest_mem_add(&m, &wrap, &err), -EINVAL);
    CU_ASSERT(strstr(err.msg, "wraps") != NULL);
    err_clear(&err);
    struct guest_mem_region empty = { .gpa = 0x100000, .size = 0, .hva = low, .fd = -1 };
    CU_ASSERT_EQUAL(guest_mem_add(&m, &empty, &err), -EINVAL);
    CU_ASSERT(strstr(err.msg, "empty") != NULL);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("guest_mem", NULL, NULL);
    CU_add_test(s, "inside", test_inside);
    CU_add_test(s, "out_of_range", test_out_of_range);
    CU_add_test(s, "crossing", test_crossing);
    CU_add_test(s, "overflow", test_overflow);
    CU_add_test(s, "add_refused", test_add_refused);
}
