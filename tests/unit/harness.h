/*
 * The CUnit harness every unit suite links with.  A suite file defines
 * test_register(), which adds its suites and tests with CU_add_suite and
 * CU_add_test; the harness initialises the main event loop, runs them and
 * prints one line per test (PASS/FAIL/SKIP) that tests/run.sh counts.
 */
#ifndef SPINDLE_TESTS_UNIT_HARNESS_H
#define SPINDLE_TESTS_UNIT_HARNESS_H

#include <CUnit/CUnit.h>
#include <stdbool.h>

void test_register(void);

/* Mark the running test skipped, with a reason (it does not fail). */
void test_skip(const char *reason);

/* A fresh file path in the suite's scratch directory (free it). */
char *test_tmpfile(const char *name);

/* Seed for random tests: SPINDLE_TEST_SEED, or the time; printed once. */
unsigned test_seed(void);

/* Whether the suite runs under a sanitizer build (slower: use fewer iterations). */
bool test_sanitized(void);

#endif
