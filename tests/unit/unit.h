/*
 * unit.h: the smallest test harness that says what failed and where.
 * Each CHECK counts as one test; main() ends with UNIT_END(), which prints
 * "<file>: N passed, N failed" and returns the exit status.
 */
#ifndef FOTAHOST_UNIT_H
#define FOTAHOST_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;

#define CHECK(cond) do { \
    if (cond) unit_passed++; \
    else { unit_failed++; fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_STR(got, want) do { \
    const char *g_ = (got), *w_ = (want); \
    if (g_ != NULL && strcmp(g_, w_) == 0) unit_passed++; \
    else { unit_failed++; fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", \
                                  __FILE__, __LINE__, w_, g_ ? g_ : "(null)"); } \
} while (0)

#define UNIT_END() ( \
    printf("%s: %d passed, %d failed\n", __FILE__, unit_passed, unit_failed), \
    unit_failed == 0 ? 0 : 1)

#endif
