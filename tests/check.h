/* The assertion macro of loom's C tests: counts checks, prints the first 50 failures
 * with file:line and a printf-style explanation, and keeps going; the test ends with
 * CHECK_FINISH(name), which prints "name: N passed, M failed" and yields the exit code. */
#ifndef LOOM_TESTS_CHECK_H
#define LOOM_TESTS_CHECK_H

#include <stdio.h>

static int checks, failures;

#define CHECK(cond, ...)                                    \
    do {                                                    \
        checks++;                                           \
        if (!(cond)) {                                      \
            failures++;                                     \
            if (failures <= 50) {                           \
                printf("FAIL %s:%d: ", __FILE__, __LINE__); \
                printf(__VA_ARGS__);                        \
                printf("\n");                               \
            }                                               \
        }                                                   \
    } while (0)

#define CHECK_FINISH(name) \
    (printf("%s: %d passed, %d failed\n", name, checks - failures, failures), failures ? 1 : 0)

#endif
