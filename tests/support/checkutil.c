/* checkutil.c - running a Check suite and the temp-dir fixture of the unit suites. */
#include "checkutil.h"

#include <stdlib.h>

#include "testutil.h"

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

char *tu_ck_tempdir(const char *tag)
{
    char *dir = tu_tempdir(tag);
    ck_assert_msg(dir != NULL, "tu_tempdir(%s) failed", tag);
    return dir;
}

void tu_ck_rmtempdir(char **dir)
{
    if (!*dir)
        return;
    tu_rmtree(*dir);
    free(*dir);
    *dir = NULL;
}
