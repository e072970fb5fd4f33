/*
 * The error table: every code has a distinct name and a description.
 */
#include "test.h"

TEST(error_strings_cover_every_code)
{
    for (int code = -1; code > PF__ERRNO_LAST; code--) {
        const char *name = pf_err_name(code);
        ASSERT(strncmp(name, "PF_E", 4) == 0);
        ASSERT(strcmp(name, "PF_E?") != 0);
        ASSERT(strcmp(pf_strerror(code), "unknown error") != 0);
        for (int other = code - 1; other > PF__ERRNO_LAST; other--)
            ASSERT(strcmp(name, pf_err_name(other)) != 0);
    }
    ASSERT_STREQ(pf_err_name(PF_OK), "PF_OK");
    ASSERT_STREQ(pf_strerror(0), "success");
    ASSERT_STREQ(pf_err_name(PF__ERRNO_LAST), "PF_E?");
    ASSERT_STREQ(pf_strerror(12345), "unknown error");
    ASSERT_STREQ(pf_err_name(PF_EINVAL), "PF_EINVAL");
}

TEST(errors_doc_lists_every_code)
{
    FILE *f = fopen("../docs/errors.md", "r"); /* tests run in the build directory */
    if (!f)
        f = fopen("docs/errors.md", "r");
    ASSERT(f != NULL);
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    for (int code = -1; code > PF__ERRNO_LAST; code--) {
        char row[128];
        snprintf(row, sizeof row, "| `%s` | %d | %s |", pf_err_name(code), code, pf_strerror(code));
        if (!strstr(doc, row))
            FAIL("docs/errors.md lacks the row %s", row);
    }
}
