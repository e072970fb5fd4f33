/*
 * The examples are programs a newcomer runs first: each must run to the end
 * and succeed (tests run in the build directory, where examples/ is).
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* Run ./examples/NAME with stdout into `out` (may be NULL); its exit status. */
static int run_example(const char *name, char *out, size_t cap)
{
    int fd[2];
    ASSERT_OK(pipe(fd));
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        char path[128];
        snprintf(path, sizeof path, "./examples/%s", name);
        execl(path, path, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    char sink[4096];
    while ((r = read(fd[0], out && n < cap - 1 ? out + n : sink,
                     out && n < cap - 1 ? cap - 1 - n : sizeof sink)) > 0)
        if (out && n < cap - 1)
            n += (size_t)r;
    if (out)
        out[n] = '\0';
    close(fd[0]);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(examples_article_sections_1_to_3_run)
{
    ASSERT_EQ(run_example("01_sequential", NULL, 0), 0);
    ASSERT_EQ(run_example("02_process_pool", NULL, 0), 0);
    ASSERT_EQ(run_example("03_thread_pool", NULL, 0), 0);
}

TEST(examples_sections_4_and_5_print_the_same_dictionary)
{
    static char shared[16384], combined[16384];
    ASSERT_EQ(run_example("04_shared_dict", shared, sizeof shared), 0);
    ASSERT_EQ(run_example("05_combine_dicts", combined, sizeof combined), 0);
    char *a = strchr(shared, '\n'), *b = strchr(combined, '\n');
    ASSERT(a && b);
    *a = *b = '\0';
    ASSERT(strncmp(shared, "{0: 201, 1: 201, ", 17) == 0);
    ASSERT_STREQ(shared, combined);
}

TEST(example_section_6_runs)
{
    ASSERT_EQ(run_example("06_compare", NULL, 0), 0);
}
