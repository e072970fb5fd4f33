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
