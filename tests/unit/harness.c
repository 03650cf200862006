/* Runs a unit suite binary's CUnit registry and reports each test. */
#include "tests/unit/harness.h"

#include <CUnit/TestRun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/aio.h"
#include "util/log.h"
#include "util/osdep.h"

static char skip_reason[256];
static bool skipped;
static char scratch[256];
static unsigned seed;
static bool seeded;

void test_skip(const char *reason)
{
    skipped = true;
    pstrcpy(skip_reason, sizeof(skip_reason), reason);
}

unsigned test_seed(void)
{
    if (!seeded) {
        const char *env = getenv("SPINDLE_TEST_SEED");
        seed = env ? (unsigned)strtoul(env, NULL, 0) : (unsigned)time(NULL);
        seeded = true;
        printf("# seed %u (set SPINDLE_TEST_SEED to repeat)\n", seed);
    }
    return seed;
}

bool test_sanitized(void)
{
    return getenv("SPINDLE_SANITIZE") != NULL;
}

char *test_tmpfile(const char *name)
{
    return xasprintf("%s/%s", scratch, name);
}

static void report_test_start(const CU_pTest test, const CU_pSuite suite)
{
    skipped = false;
    skip_reason[0] = '\0';
}

static void report_test_complete(const CU_pTest test, const CU_pSuite suite,
                                 const CU_pFailureRecord failures)
{
    if (failures) {
        for (CU_pFailureRecord f = failures; f; f = f->pNext) {
            printf("FAIL: %s/%s: %s:%u: %s\n", suite->pName, test->pName,
                   f->strFileName ? f->strFileName : "?", f->uiLineNumber,
                   f->strCondition ? f->strCondition : "?");
        }
    } else if (skipped) {
        printf("SKIP: %s/%s (%s)\n", suite->pName, test->pName, skip_reason);
    } else {
        printf("PASS: %s/%s\n", suite->pName, test->pName);
    }
    fflush(stdout);
}

static void remove_scratch(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", scratch);
    }
}

int main(int argc, char **argv)
{
    struct err err = { 0 };

    log_set_program(argv[0]);
    if (aio_main_init(&err) < 0) {
        printf("FAIL: %s: %s\n", argv[0], err.msg);
        return 1;
    }
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(scratch, sizeof(scratch), "%s/spindle-unit-XXXXXX", tmp);
    if (!mkdtemp(scratch)) {
        printf("FAIL: %s: cannot make a scratch directory in %s\n", argv[0], tmp);
        return 1;
    }
    atexit(remove_scratch);

    if (CU_initialize_registry() != CUE_SUCCESS) {
        printf("FAIL: %s: CUnit registry\n", argv[0]);
        return 1;
    }
    test_register();
    CU_set_test_start_handler(report_test_start);
    CU_set_test_complete_handler(report_test_complete);
    CU_run_all_tests();
    unsigned failed = CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    printf("# %s: %u tests, %u failed\n", argv[0], ran, failed);
    return failed ? 1 : 0;
}
