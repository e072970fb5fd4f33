/*
 * `pfor compare`, end to end: the command is run from the build directory
 * (the tests' working directory) with short sweeps, and its table, CSV,
 * JSON and plot files are checked; bad input must give one line and exit
 * status 2; failed requests a summary and exit status 1.
 *
 * Assertions are on behaviour (fields, counts, statuses), never on speed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* --- helpers --------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

struct run {
    int status; /* exit status, or -1 if killed for the time limit or a signal */
    char out[65536];
    char err[16384];
};

/* Run ./pfor with argv (argv[0] is "pfor"), collect stdout and stderr, wait
 * up to `seconds` (scaled). */
static void run_pfor(char *const argv[], double seconds, struct run *r)
{
    if (access("./pfor", X_OK) != 0)
        SKIP("./pfor not found (run the tests from the build directory)");
    int o[2], e[2];
    ASSERT(pipe2(o, O_CLOEXEC) == 0 && pipe2(e, O_CLOEXEC) == 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        execv("./pfor", argv);
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    size_t n_out = 0, n_err = 0;
    bool open_out = true, open_err = true;
    double deadline = now_s() + seconds * pf_test_scale();
    while ((open_out || open_err) && now_s() < deadline) {
        struct pollfd p[2] = {{.fd = open_out ? o[0] : -1, .events = POLLIN},
                              {.fd = open_err ? e[0] : -1, .events = POLLIN}};
        if (poll(p, 2, 100) <= 0)
            continue;
        char buf[4096];
        if (p[0].revents) {
            ssize_t k = read(o[0], buf, sizeof buf);
            if (k <= 0) {
                open_out = false;
            } else {
                size_t take = min_size((size_t)k, sizeof r->out - 1 - n_out);
                memcpy(r->out + n_out, buf, take);
                n_out += take;
            }
        }
        if (p[1].revents) {
            ssize_t k = read(e[0], buf, sizeof buf);
            if (k <= 0) {
                open_err = false;
            } else {
                size_t take = min_size((size_t)k, sizeof r->err - 1 - n_err);
                memcpy(r->err + n_err, buf, take);
                n_err += take;
            }
        }
    }
    r->out[n_out] = '\0';
    r->err[n_err] = '\0';
    close(o[0]);
    close(e[0]);
    int status;
    r->status = -1;
    while (now_s() < deadline + 5) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            return;
        }
        pf_test_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL("pfor %s did not finish in time; stderr: %s", argv[1], r->err);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* A fresh folder under /tmp, removed (one level deep) by rm_dir. */
static void make_dir(char *path, size_t size)
{
    snprintf(path, size, "/tmp/pfor-compare-test-XXXXXX");
    ASSERT(mkdtemp(path) != NULL);
}

static void rm_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(path);
}

static bool have_gnuplot(void)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save, *dir = strtok_r(buf, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        char p[4200];
        snprintf(p, sizeof p, "%s/gnuplot", dir);
        if (access(p, X_OK) == 0)
            return true;
    }
    return false;
}

static json_t *load_json(const char *path)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!j)
        FAIL("%s is not valid JSON: %s (line %d)", path, jerr.text, jerr.line);
    return j;
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!v || !json_is_number(v))
        FAIL("field %s is missing or not a number", key);
    return json_number_value(v);
}

static size_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* A port nothing listens on. */
static uint16_t closed_port(void)
{
    pf_server *s;
    ASSERT_OK(pf_server_start(&s, NULL));
    uint16_t port = pf_server_port(s);
    pf_server_stop(s);
    return port;
}

/* Makes `body` (sh) the gnuplot that ./pfor finds for the rest of this test
 * (a process of its own: PATH needs no restoring).  It is written to a fresh
 * folder, bin (rm_dir removes it), which goes first on PATH.  Before `body`
 * runs, pfor's -e assignments (NAME="VALUE"; is sh too) are evaluated and
 * shifted off, so $out_svg is the image and $1 the script; $0 is
 * bin/gnuplot. */
static void fake_gnuplot(char *bin, size_t size, const char *body)
{
    make_dir(bin, size);
    char fake[128], path[8192];
    snprintf(fake, sizeof fake, "%s/gnuplot", bin);
    FILE *f = fopen(fake, "w");
    ASSERT(f != NULL);
    fprintf(f, "#!/bin/sh\nif [ \"$1\" = -e ]; then eval \"$2\"; shift 2; fi\n%s", body);
    ASSERT(fclose(f) == 0 && chmod(fake, 0755) == 0);
    const char *old = getenv("PATH");
    snprintf(path, sizeof path, "%s:%s", bin, old ? old : "/usr/bin:/bin");
    ASSERT(setenv("PATH", path, 1) == 0);
}

/* Runs ./pfor with args (NULL-ended; "--json FILE" is added) under
 * RLIMIT_NOFILE 8, which ./pfor inherits: enough for it, too few
 * descriptors for a process pool.  Returns the JSON it wrote. */
static json_t *run_with_8_descriptors(char *const args[], struct run *r)
{
    if (pf_test_valgrind()) /* `make valgrind` leaves these tests out */
        SKIP("valgrind does not really lower RLIMIT_NOFILE (it refuses a lower hard limit and "
             "only pretends to lower the soft one: ./pfor would get the full limit)");
    char dir[64], json[128], *argv[32];
    make_dir(dir, sizeof dir);
    snprintf(json, sizeof json, "%s/c.json", dir);
    size_t n = 0;
    for (; args[n]; n++) {
        ASSERT(n < 29);
        argv[n] = args[n];
    }
    argv[n++] = "--json";
    argv[n++] = json;
    argv[n] = NULL;
    struct rlimit rl = {8, 8};
    ASSERT(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    run_pfor(argv, 30, r);
    json_t *j = load_json(json);
    rm_dir(dir);
    return j;
}

/* --- tests ----------------------------------------------------------------- */

/* The default outputs of --quick: table, CSV, JSON, SVG and PNG. */
TEST(compare_quick_end_to_end_writes_table_csv_json_and_plots)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    char *argv[] = {"pfor", "compare", "--quick", "--out", dir, NULL};
    struct run r;
    run_pfor(argv, 60, &r);
    if (r.status != 0)
        FAIL("status %d, stderr: %s", r.status, r.err);
    ASSERT(strstr(r.out, "ideal/wall") != NULL);
    ASSERT(strstr(r.out, "built-in mock API") != NULL);
    ASSERT_STREQ(r.err, ""); /* stderr is not a terminal: no progress bar */

    char path[256];
    snprintf(path, sizeof path, "%s/compare-http.json", dir);
    json_t *j = load_json(path);
    ASSERT_STREQ(json_string_value(json_object_get(j, "workload")), "http");
    json_t *m = json_object_get(j, "machine");
    ASSERT(num(m, "cores") >= 1);
    ASSERT(json_string_value(json_object_get(m, "os")) != NULL);
    json_t *p = json_object_get(j, "parameters");
    ASSERT_STREQ(json_string_value(json_object_get(p, "server")), "built-in");
    ASSERT(num(json_object_get(p, "latency_ms"), "min") == 10.0);
    json_t *sizes = json_object_get(p, "sizes");
    ASSERT_EQ(json_array_size(sizes), 5);
    json_t *rows = json_object_get(j, "results");
    ASSERT_EQ(json_array_size(rows), 15); /* processes, threads, event x 5 sizes */
    const char *order[] = {"processes", "threads", "event"};
    const uint64_t expect_sizes[] = {5, 10, 50, 100, 500};
    for (size_t i = 0; i < 15; i++) {
        json_t *row = json_array_get(rows, i);
        ASSERT_STREQ(json_string_value(json_object_get(row, "executor")), order[i / 5]);
        double n = num(row, "requests");
        ASSERT_EQ((uint64_t)n, expect_sizes[i % 5]);
        double w = num(row, "workers");
        double wall = num(row, "wall_s");
        ASSERT(w >= 1 && wall > 0);
        ASSERT(num(row, "requests_per_s") > 0);
        ASSERT_EQ(num(row, "errors"), 0);
        double p50 = num(row, "p50_ms"), p99 = num(row, "p99_ms");
        ASSERT(p50 >= 10.0 && p99 >= p50); /* every request waited out the latency */
        double ideal = num(row, "ideal_s");
        uint64_t wi = (uint64_t)w, ni = (uint64_t)n;
        double want = (double)((ni + wi - 1) / wi) * 0.010;
        ASSERT(ideal > want - 1e-9 && ideal < want + 1e-9);
        ASSERT(num(row, "efficiency") > 0);
    }
    json_t *f = json_object_get(j, "failures");
    ASSERT_EQ(num(f, "failed"), 0);
    json_decref(j);

    snprintf(path, sizeof path, "%s/compare-http.csv", dir);
    FILE *csv = fopen(path, "r");
    ASSERT(csv != NULL);
    char line[512];
    ASSERT(fgets(line, sizeof line, csv) != NULL);
    ASSERT(strncmp(line,
                   "executor,workers,requests,latency_ms,wall_s,requests_per_s,p50_ms,"
                   "p99_ms,errors,ideal_s,efficiency,cores,os",
                   73) == 0);
    int data_lines = 0;
    while (fgets(line, sizeof line, csv)) {
        int commas = 0;
        for (char *s = line; *s; s++)
            commas += *s == ',';
        ASSERT_EQ(commas, 12);
        data_lines++;
    }
    fclose(csv);
    ASSERT_EQ(data_lines, 15);

    if (have_gnuplot()) {
        snprintf(path, sizeof path, "%s/compare-http.svg", dir);
        FILE *svg = fopen(path, "r");
        ASSERT(svg != NULL);
        char head[4096];
        size_t k = fread(head, 1, sizeof head - 1, svg);
        head[k] = '\0';
        fclose(svg);
        ASSERT(strstr(head, "<svg") != NULL);
        snprintf(path, sizeof path, "%s/compare-http.png", dir);
        FILE *png = fopen(path, "rb");
        ASSERT(png != NULL);
        unsigned char magic[8];
        ASSERT_EQ(fread(magic, 1, 8, png), 8);
        fclose(png);
        ASSERT(memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0);
        ASSERT(file_size(path) > 1000);
    }
    rm_dir(dir);
}

/* The CPU workload counts the primes below a million (78,498) right on
 * every executor and worker count. */
TEST(compare_cpu_counts_primes_right_on_every_executor)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    char json[128];
    snprintf(json, sizeof json, "%s/cpu.json", dir);
    char *argv[] = {"pfor",  "compare", "--workload", "cpu",    "--quick", "--workers",
                    "1,2,3", "--tasks", "24",         "--json", json,      NULL};
    struct run r;
    run_pfor(argv, 60, &r);
    if (r.status != 0)
        FAIL("status %d, stderr: %s", r.status, r.err);
    ASSERT(strstr(r.out, "speedup") != NULL);
    json_t *j = load_json(json);
    ASSERT_STREQ(json_string_value(json_object_get(j, "workload")), "cpu");
    json_t *p = json_object_get(j, "parameters");
    ASSERT_EQ(num(p, "bound"), 1000000);
    ASSERT_EQ(num(p, "expected_primes"), 78498);
    json_t *rows = json_object_get(j, "results");
    ASSERT_EQ(json_array_size(rows), 7); /* sequential + processes x 3 + threads x 3 */
    int seen[3] = {0};
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        const char *ex = json_string_value(json_object_get(row, "executor"));
        seen[strcmp(ex, "sequential") == 0 ? 0 : strcmp(ex, "processes") == 0 ? 1 : 2]++;
        ASSERT_EQ(num(row, "primes"), 78498);
        ASSERT(json_is_true(json_object_get(row, "primes_ok")));
        ASSERT_EQ(num(row, "tasks"), 24);
        ASSERT_EQ(num(row, "errors"), 0);
        ASSERT(num(row, "speedup") > 0);
    }
    ASSERT(seen[0] == 1 && seen[1] == 3 && seen[2] == 3);
    json_decref(j);
    rm_dir(dir);
}

/* Injected errors: counted per row, the run completes, the summary says
 * why, exit status 1.  Also covers sequential and a worker sweep. */
TEST(compare_failed_requests_are_counted_and_summarised)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    char json[128];
    snprintf(json, sizeof json, "%s/e.json", dir);
    char *argv[] = {"pfor",      "compare", "--latency", "1ms",         "--error-rate",
                    "0.3",       "--sizes", "40",        "--executors", "sequential,threads,event",
                    "--workers", "1,3",     "--json",    json,          NULL};
    struct run r;
    run_pfor(argv, 60, &r);
    ASSERT_EQ(r.status, 1);
    ASSERT(strstr(r.err, "requests failed") != NULL);
    ASSERT(strstr(r.err, "HTTP 500") != NULL);
    json_t *j = load_json(json);
    json_t *rows = json_object_get(j, "results");
    ASSERT_EQ(json_array_size(rows), 5); /* sequential; threads 1 and 3; event 1 and 3 */
    double failed = 0;
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        double e = num(row, "errors");
        ASSERT(e > 0 && e < 40); /* 30 % of 40, on each side */
        failed += e;
    }
    json_t *wk =
        json_object_get(json_object_get(json_object_get(j, "parameters"), "workers"), "threads");
    ASSERT_EQ(json_array_size(wk), 2);
    ASSERT_EQ(json_integer_value(json_array_get(wk, 1)), 3);
    json_t *f = json_object_get(j, "failures");
    ASSERT_EQ(num(f, "failed"), failed);
    ASSERT_EQ(num(f, "requests"), 200);
    json_t *reason = json_array_get(json_object_get(f, "reasons"), 0);
    ASSERT(reason != NULL);
    ASSERT_EQ(num(reason, "task_code"), 500);
    json_decref(j);
    rm_dir(dir);
}

/* An API nobody answers: a first probe request finds out, every planned
 * request is reported failed, one summary line says why, exit status 1,
 * and the JSON is still written. */
TEST(compare_unreachable_url_fails_every_request_with_a_summary)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    char url[64], json[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/api/users", closed_port());
    snprintf(json, sizeof json, "%s/u.json", dir);
    char *argv[] = {"pfor", "compare", "--url", url, "--sizes", "5,20", "--json", json, NULL};
    struct run r;
    run_pfor(argv, 60, &r);
    ASSERT_EQ(r.status, 1);
    ASSERT_EQ(count_lines(r.err), 1);
    ASSERT(strstr(r.err, "all 75 requests failed: cannot connect") != NULL);
    ASSERT(strstr(r.out, "did not answer") != NULL);
    json_t *j = load_json(json);
    json_t *f = json_object_get(j, "failures");
    ASSERT_EQ(num(f, "failed"), 75);
    ASSERT_EQ(num(f, "requests"), 75);
    json_t *reason = json_array_get(json_object_get(f, "reasons"), 0);
    ASSERT_EQ(num(reason, "task_code"), PF_ECONNECT);
    ASSERT_EQ(num(reason, "count"), 75);
    json_t *p = json_object_get(j, "parameters");
    ASSERT_STREQ(json_string_value(json_object_get(p, "server")), "url");
    ASSERT(json_is_null(json_object_get(p, "latency_ms")));       /* unknown without --latency */
    ASSERT_EQ(json_array_size(json_object_get(j, "results")), 0); /* nothing measured */
    json_decref(j);
    rm_dir(dir);
}

/* Entries of dir other than "." and "..". */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A gnuplot that fails half way through its image (here a stand-in first
 * on PATH: it writes part of the file it is told to, then exits 1) leaves
 * no image behind, and CSV/JSON runs leave no temporary files. */
TEST(compare_failed_plot_leaves_no_half_image)
{
    char bin[64], out[64];
    make_dir(out, sizeof out);
    /* Its target: $out_svg, else the name the script sets. */
    fake_gnuplot(bin, sizeof bin,
                 "[ -n \"$out_svg\" ] || out_svg=$(sed -n \"s/^set output '\\(.*\\)'$/\\1/p;"
                 "s/^if (!exists(.out_svg.)) out_svg = '\\(.*\\)'$/\\1/p\" \"$1\" | head -n 1)\n"
                 "echo '<svg half' > \"$out_svg\"\n"
                 "exit 1\n");
    char svg[128], json[128];
    snprintf(svg, sizeof svg, "%s/r.svg", out);
    snprintf(json, sizeof json, "%s/r.json", out);
    char *argv[] = {"pfor",   "compare", "--sizes", "5",  "--executors", "threads",
                    "--plot", svg,       "--json",  json, NULL};
    struct run r;
    run_pfor(argv, 60, &r);
    ASSERT_EQ(r.status, 1); /* a plot asked for by name was not drawn */
    ASSERT(strstr(r.err, "gnuplot failed") != NULL);
    ASSERT(access(svg, F_OK) != 0 && errno == ENOENT);
    /* What is left: the whole JSON and the script, nothing half written. */
    json_t *j = load_json(json);
    json_decref(j);
    ASSERT_EQ(count_entries(out), 2); /* r.json, r.gp */
    rm_dir(out);
    rm_dir(bin);
}

/* A path to an existing folder, `len` bytes long: dir, then "/." repeated
 * (and one "/" if the length is odd). */
static void long_path(char *buf, size_t size, const char *dir, size_t len)
{
    ASSERT(len < size && strlen(dir) < len);
    size_t n = (size_t)snprintf(buf, size, "%s", dir);
    if ((len - n) % 2)
        buf[n++] = '/';
    while (n < len) {
        buf[n++] = '/';
        buf[n++] = '.';
    }
    buf[n] = '\0';
}

TEST(compare_bad_input_exits_2_with_one_line)
{
    pf_server *taken;
    ASSERT_OK(pf_server_start(&taken, NULL));
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%u", pf_server_port(taken));
    /* --out naming a regular file, and folders whose result names (or the
     * NAME.PID.tmp they are first written as) do not fit in PATH_MAX.  A
     * read-only --out cannot be tested here: the tests run as root, who may
     * write into a 0555 folder. */
    char dir[64], file[128], tmp_too_long[4200], name_too_long[4200];
    make_dir(dir, sizeof dir);
    snprintf(file, sizeof file, "%s/not-a-folder", dir);
    FILE *f = fopen(file, "w");
    ASSERT(f != NULL && fclose(f) == 0);
    long_path(tmp_too_long, sizeof tmp_too_long, dir, 4096 - 18 - 3); /* .json fits, .tmp not */
    long_path(name_too_long, sizeof name_too_long, dir, 4090);
    /* --plot DIR/p.svg draws with DIR/p.gp beside it: here a folder */
    char plot[128], plot_gp[128];
    snprintf(plot, sizeof plot, "%s/p.svg", dir);
    snprintf(plot_gp, sizeof plot_gp, "%s/p.gp", dir);
    ASSERT_EQ(mkdir(plot_gp, 0755), 0);
    /* Cases the old parser let through get a short run and no results
     * folder, so that they fail fast there. */
    struct {
        char *argv[12];
        const char *want; /* in the line; NULL: anything */
    } cases[] = {
        {{"pfor", "compare", "--bogus", NULL}, NULL},
        {{"pfor", "compare", "stray", NULL}, NULL},
        {{"pfor", "compare", "--latency", "abc", NULL}, NULL},
        {{"pfor", "compare", "--latency", "300ms..100ms", NULL}, NULL},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--json", "/dev/null",
          "--latency", " 5ms", NULL},
         "--latency"},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--json", "/dev/null",
          "--latency", "0x10", NULL},
         "--latency"},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--json", "/dev/null",
          "--latency", "5ms.. 9ms", NULL},
         "--latency"},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--json", "/dev/null",
          "--timeout", "1e1", NULL},
         "--timeout"},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--json", "/dev/null",
          "--error-rate", " 0.1", NULL},
         "--error-rate"},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--json", "/dev/null",
          "--error-rate", "0x0.1", NULL},
         "--error-rate"},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--plot", plot, NULL},
         ".gp"},
        {{"pfor", "compare", "--sizes", "5,,10", NULL}, NULL},
        {{"pfor", "compare", "--sizes", "0", NULL}, NULL},
        {{"pfor", "compare", "--sizes", "ten", NULL}, NULL},
        {{"pfor", "compare", "--executors", "threads,fibers", NULL}, "event, mpi"},
        {{"pfor", "compare", "--executors", "threads,threads", NULL}, NULL},
        {{"pfor", "compare", "--workers", "0", NULL}, NULL},
        {{"pfor", "compare", "--workload", "gpu", NULL}, NULL},
        {{"pfor", "compare", "--url", "ftp://example.org/", NULL}, NULL},
        {{"pfor", "compare", "--url", "http://127.0.0.1:1/", "--error-rate", "0.1", NULL}, NULL},
        {{"pfor", "compare", "--workload", "cpu", "--sizes", "5", NULL}, NULL},
        {{"pfor", "compare", "--workload", "cpu", "--executors", "event", NULL}, NULL},
        {{"pfor", "compare", "--plot", "graph.txt", NULL}, NULL},
        {{"pfor", "compare", "--timeout", "0", NULL}, NULL},
        {{"pfor", "compare", "--json", "/nonexistent-pfor-folder/r.json", NULL}, NULL},
        {{"pfor", "compare", "--csv", "/", NULL}, NULL},
        {{"pfor", "compare", "--port", NULL}, NULL},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--out", file, NULL},
         "not a folder"},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--out", tmp_too_long, NULL},
         "too long"},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--out", name_too_long,
          NULL},
         "too long"},
        {{"pfor", "compare", "--port", port_s, "--sizes", "5", "--json", "/dev/null", NULL},
         "in use"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r;
        char **argv = cases[i].argv;
        run_pfor(argv, 30, &r);
        char args[160] = "";
        for (char **a = argv + 2; *a; a++)
            snprintf(args + strlen(args), sizeof args - strlen(args), " '%.40s'", *a);
        if (r.status != 2 || count_lines(r.err) != 1 || strncmp(r.err, "pfor: compare: ", 15) != 0)
            FAIL("case %zu (%s): status %d, stderr '%s'", i, args, r.status, r.err);
        if (cases[i].want && !strstr(r.err, cases[i].want))
            FAIL("case %zu (%s): '%s' is not in '%s'", i, args, cases[i].want, r.err);
        if (r.out[0]) /* refused before the table */
            FAIL("case %zu (%s): printed '%.200s'", i, args, r.out);
    }
    ASSERT_EQ(count_entries(dir), 2); /* not-a-folder and p.gp/; nothing written */
    rmdir(plot_gp);
    rm_dir(dir);
    pf_server_stop(taken);
}

/* A worker count that needs more descriptors than RLIMIT_NOFILE allows
 * (with --workers, the event-driven mode's in-flight count too) runs with
 * as many as fit, says so, and every request succeeds. */
TEST(compare_workers_are_capped_to_the_descriptor_limit)
{
    struct rlimit rl = {256, 256}; /* inherited by ./pfor */
    ASSERT(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    char dir[64], json[128];
    make_dir(dir, sizeof dir);
    snprintf(json, sizeof json, "%s/fd.json", dir);
    /* The latency keeps all 200 connections open at once. */
    char *argv[] = {"pfor",    "compare", "--executors", "threads,event", "--workers", "200",
                    "--sizes", "200",     "--latency",   "50ms",          "--timeout", "3s",
                    "--json",  json,      NULL};
    struct run r;
    run_pfor(argv, 60, &r);
    if (r.status != 0)
        FAIL("status %d, stderr: %s", r.status, r.err);
    ASSERT_EQ(count_lines(r.err), 2); /* one per executor */
    ASSERT(strstr(r.err, "threads: more than") != NULL);
    ASSERT(strstr(r.err, "event: more than") != NULL);
    ASSERT(strstr(r.err, "RLIMIT_NOFILE (256)") != NULL);
    json_t *j = load_json(json);
    json_t *rows = json_object_get(j, "results");
    ASSERT_EQ(json_array_size(rows), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *row = json_array_get(rows, i);
        double w = num(row, "workers");
        ASSERT(w >= 1 && w < 200);
        char want[64];
        snprintf(want, sizeof want, "running %.0f instead of 200", w);
        ASSERT(strstr(r.err, want) != NULL); /* the warning names the count used */
        ASSERT_EQ(num(row, "errors"), 0);
    }
    ASSERT_EQ(num(json_object_get(j, "failures"), "failed"), 0);
    json_decref(j);
    rm_dir(dir);
}

/* With a latency of 0 there is no ideal: '-' in the table, an empty CSV
 * field, JSON null (and so no efficiency). */
TEST(compare_zero_latency_has_no_ideal)
{
    char dir[64], csv[128], json[128];
    make_dir(dir, sizeof dir);
    snprintf(csv, sizeof csv, "%s/z.csv", dir);
    snprintf(json, sizeof json, "%s/z.json", dir);
    char *argv[] = {"pfor",    "compare", "--latency", "0",      "--sizes", "5", "--executors",
                    "threads", "--csv",   csv,         "--json", json,      NULL};
    struct run r;
    run_pfor(argv, 30, &r);
    if (r.status != 0)
        FAIL("status %d, stderr: %s", r.status, r.err);
    const char *row = strstr(r.out, "\nthreads ");
    ASSERT(row != NULL);
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(row + 1, "\n"), row + 1);
    size_t len = strlen(line);
    ASSERT(len > 20 && strcmp(line + len - 2, " -") == 0); /* ideal/wall */
    ASSERT(strstr(line, " -          -") != NULL);         /* ideal s, ideal/wall */
    json_t *j = load_json(json);
    json_t *jr = json_array_get(json_object_get(j, "results"), 0);
    ASSERT(json_is_null(json_object_get(jr, "ideal_s")));
    ASSERT(json_is_null(json_object_get(jr, "efficiency")));
    json_decref(j);
    FILE *f = fopen(csv, "r");
    ASSERT(f != NULL);
    ASSERT(fgets(line, sizeof line, f) != NULL); /* the header */
    ASSERT(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    /* executor,workers,requests,latency_ms,wall_s,rps,p50,p99,errors,ideal_s,efficiency,... */
    const char *p = line;
    for (int comma = 0; comma < 9; comma++) {
        p = strchr(p, ',');
        ASSERT(p != NULL);
        p++;
    }
    ASSERT(strncmp(p, ",,", 2) == 0); /* ideal_s and efficiency empty */
    rm_dir(dir);
}

/* The `written:` line lists only the files that were written (/dev/full
 * takes the check, a device is written in place, and the write fails). */
TEST(compare_written_line_lists_only_files_written)
{
    if (access("/dev/full", W_OK) != 0)
        SKIP("no /dev/full");
    char dir[64], json[128];
    make_dir(dir, sizeof dir);
    snprintf(json, sizeof json, "%s/w.json", dir);
    char *argv[] = {"pfor", "compare", "--sizes",   "5",      "--executors", "threads", "--latency",
                    "1ms",  "--csv",   "/dev/full", "--json", json,          NULL};
    struct run r;
    run_pfor(argv, 30, &r);
    ASSERT_EQ(r.status, 1);
    ASSERT(strstr(r.err, "cannot write /dev/full") != NULL);
    const char *w = strstr(r.out, "written:");
    ASSERT(w != NULL);
    ASSERT(strstr(w, json) != NULL);
    ASSERT(strstr(w, "/dev/full") == NULL);
    rm_dir(dir);
}

/* --plot when nothing was measured (here only mpi, outside mpirun): one
 * line says why no plot was drawn, exit status 1. */
TEST(compare_plot_with_nothing_measured_says_why)
{
    char dir[64], svg[128];
    make_dir(dir, sizeof dir);
    snprintf(svg, sizeof svg, "%s/p.svg", dir);
    char *argv[] = {"pfor", "compare", "--executors", "mpi", "--sizes", "5", "--plot", svg, NULL};
    struct run r;
    run_pfor(argv, 30, &r);
    if (!strstr(r.out, "skipped"))
        SKIP("this pfor runs under mpirun");
    ASSERT_EQ(r.status, 1);
    ASSERT_EQ(count_lines(r.err), 1);
    ASSERT(strstr(r.err, "nothing was measured") != NULL);
    ASSERT(strstr(r.err, svg) != NULL);
    ASSERT(access(svg, F_OK) != 0);
    rm_dir(dir);
}

/* Executors whose every request failed are not ranked: no "fastest". */
TEST(compare_no_winner_when_every_request_failed)
{
    char dir[64], json[128];
    make_dir(dir, sizeof dir);
    snprintf(json, sizeof json, "%s/f.json", dir);
    char *argv[] = {"pfor", "compare",     "--error-rate",  "1",      "--latency", "0", "--sizes",
                    "5",    "--executors", "threads,event", "--json", json,        NULL};
    struct run r;
    run_pfor(argv, 30, &r);
    ASSERT_EQ(r.status, 1);
    ASSERT(strstr(r.err, "all 10 requests failed") != NULL);
    ASSERT(strstr(r.out, "fastest") == NULL);
    ASSERT(strstr(r.out, "faster than") == NULL);
    rm_dir(dir);
}

/* An executor that was skipped (mpi outside mpirun) ran nothing: the summary
 * leaves it out rather than saying its every request failed. */
TEST(compare_summary_leaves_skipped_executors_out)
{
    char dir[64], json[128];
    make_dir(dir, sizeof dir);
    snprintf(json, sizeof json, "%s/s.json", dir);
    char *argv[] = {"pfor",        "compare",           "--latency", "1ms", "--sizes", "5",
                    "--executors", "threads,event,mpi", "--json",    json,  NULL};
    struct run r;
    run_pfor(argv, 30, &r);
    if (!strstr(r.out, "skipped"))
        SKIP("this pfor runs under mpirun");
    ASSERT_EQ(r.status, 0);
    const char *at = strstr(r.out, "at 5 requests:");
    ASSERT(at != NULL);
    ASSERT(strstr(at, "threads") && strstr(at, "event"));
    ASSERT(strstr(at, "mpi") == NULL);
    ASSERT(strstr(r.out, "every request failed") == NULL);
    rm_dir(dir);
}

/* The command itself: no command or an unknown one is bad input (one line,
 * exit status 2); `pfor help` prints the usage and exits 0. */
TEST(cli_without_a_command_exits_2_with_one_line)
{
    char *none[] = {"pfor", NULL};
    char *bogus[] = {"pfor", "bogus", NULL};
    char *help[] = {"pfor", "help", NULL};
    struct run r;
    run_pfor(none, 10, &r);
    ASSERT_EQ(r.status, 2);
    ASSERT_EQ(count_lines(r.err), 1);
    ASSERT(strstr(r.err, "command") && strstr(r.err, "pfor help"));
    ASSERT_STREQ(r.out, "");
    run_pfor(bogus, 10, &r);
    ASSERT_EQ(r.status, 2);
    ASSERT_EQ(count_lines(r.err), 1);
    ASSERT(strstr(r.err, "bogus") != NULL);
    run_pfor(help, 10, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT(strstr(r.out, "compare") && strstr(r.out, "serve"));
}

TEST(compare_help_exits_0)
{
    char *argv[] = {"pfor", "compare", "--help", NULL};
    struct run r;
    run_pfor(argv, 10, &r);
    ASSERT_EQ(r.status, 0);
    ASSERT(strstr(r.out, "--executors") && strstr(r.out, "--workload") && strstr(r.out, "--url"));
}

/* Run ./pfor with argv in the background, stdout and stderr to /dev/null. */
static pid_t start_pfor(char *const argv[])
{
    if (access("./pfor", X_OK) != 0)
        SKIP("./pfor not found (run the tests from the build directory)");
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null, 1);
        dup2(null, 2);
        execv("./pfor", argv);
        _exit(127);
    }
    return pid;
}

/* Entries of dir whose name ends in ".tmp". */
static int count_tmp_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        n += len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0;
    }
    closedir(d);
    return n;
}

/* SIGTERM (or Ctrl-C) while gnuplot draws: the run stops, and leaves
 * neither gnuplot running nor a half image under its temporary name.  The
 * stand-in gnuplot writes part of its image, then sleeps. */
TEST(compare_signal_while_plotting_leaves_no_child_or_temp_file)
{
    char bin[64], out[64], pidfile[128], svg[128];
    make_dir(out, sizeof out);
    fake_gnuplot(bin, sizeof bin,
                 "echo '<svg half' > \"$out_svg\"\n"
                 "p=\"${0%/*}/gnuplot.pid\"\n"
                 "echo $$ > \"$p.new\" && mv \"$p.new\" \"$p\"\n"
                 "exec sleep 30\n");
    snprintf(pidfile, sizeof pidfile, "%s/gnuplot.pid", bin);
    snprintf(svg, sizeof svg, "%s/s.svg", out);
    char *argv[] = {"pfor",      "compare", "--sizes", "5", "--executors", "threads",
                    "--latency", "1ms",     "--plot",  svg, NULL};
    pid_t pid = start_pfor(argv);
    pid_t gp = 0;
    double deadline = now_s() + 30 * pf_test_scale();
    while (gp <= 0 && now_s() < deadline) {
        FILE *p = fopen(pidfile, "r");
        int v = 0;
        if (p) {
            if (fscanf(p, "%d", &v) != 1)
                v = 0;
            fclose(p);
        }
        gp = v;
        if (gp <= 0)
            pf_test_sleep_ms(20);
    }
    if (gp <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        FAIL("the stand-in gnuplot did not start");
    }
    ASSERT(kill(pid, SIGTERM) == 0);
    int status = 0;
    double until = now_s() + 10 * pf_test_scale();
    pid_t w = 0;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_s() < until)
        pf_test_sleep_ms(10);
    if (w != pid) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    until = now_s() + 5 * pf_test_scale();
    while (pf_test_pid_running(gp) && now_s() < until)
        pf_test_sleep_ms(10);
    bool orphan = pf_test_pid_running(gp);
    if (orphan)
        kill(gp, SIGKILL);
    int tmps = count_tmp_entries(out);
    bool image = access(svg, F_OK) == 0;
    rm_dir(out);
    rm_dir(bin);
    ASSERT_EQ(w, pid); /* it stopped */
    ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    ASSERT(!orphan);    /* gnuplot did not outlive it */
    ASSERT_EQ(tmps, 0); /* no half image under a temporary name */
    ASSERT(!image);
}

/* Two outputs that name one file (the same name, another spelling of it,
 * or the .gp script that --plot writes beside its image) would overwrite
 * each other: bad input, refused before the run. */
TEST(compare_outputs_naming_one_file_exit_2)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    char x[128], x2[128], gp[128], svg[128], q[128];
    snprintf(x, sizeof x, "%s/x", dir);
    snprintf(x2, sizeof x2, "%s/./x", dir);
    snprintf(gp, sizeof gp, "%s/p.gp", dir);
    snprintf(svg, sizeof svg, "%s/p.svg", dir);
    snprintf(q, sizeof q, "%s/q.svg", dir);
    struct {
        char *argv[14];
    } cases[] = {
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--latency", "1ms", "--csv",
          x, "--json", x, NULL}},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--latency", "1ms", "--csv",
          x, "--json", x2, NULL}},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--latency", "1ms", "--json",
          gp, "--plot", svg, NULL}},
        {{"pfor", "compare", "--sizes", "5", "--executors", "threads", "--latency", "1ms", "--csv",
          q, "--plot", q, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r;
        run_pfor(cases[i].argv, 30, &r);
        if (r.status != 2 || count_lines(r.err) != 1 || strncmp(r.err, "pfor: compare: ", 15) != 0)
            FAIL("case %zu: status %d, stderr '%s'", i, r.status, r.err);
        if (r.out[0])
            FAIL("case %zu: printed '%.200s'", i, r.out);
    }
    ASSERT_EQ(count_entries(dir), 0);
    rm_dir(dir);
}

/* CPU measurements whose executor cannot be created (here process pools
 * under RLIMIT_NOFILE 8, too few descriptors for one) fail their tasks:
 * every one counted in the failures, summarised on stderr, exit status 1. */
TEST(compare_cpu_executor_that_cannot_start_fails_the_run)
{
    char *args[] = {"pfor",      "compare",   "--workload", "cpu",     "--executors",
                    "processes", "--workers", "1,2,3",      "--tasks", "2",
                    "--bound",   "100",       NULL};
    struct run r;
    json_t *j = run_with_8_descriptors(args, &r);
    json_t *rows = json_object_get(j, "results");
    ASSERT_EQ(json_array_size(rows), 3);
    double errors = 0;
    for (size_t i = 0; i < 3; i++)
        errors += num(json_array_get(rows, i), "errors");
    double failed = num(json_object_get(j, "failures"), "failed");
    double tasks = num(json_object_get(j, "failures"), "tasks");
    json_decref(j);
    ASSERT_EQ(tasks, 6);
    ASSERT_EQ(errors, 6);
    ASSERT_EQ(failed, errors);
    ASSERT_EQ(r.status, 1);
    ASSERT(strstr(r.err, "tasks failed") != NULL);
}

/* Strings that are not UTF-8 (a --body in Latin-1) still appear in the
 * JSON, their bad bytes replaced, rather than dropping the field. */
TEST(compare_json_keeps_strings_that_are_not_utf8)
{
    char dir[64], json[128];
    make_dir(dir, sizeof dir);
    snprintf(json, sizeof json, "%s/u.json", dir);
    char *argv[] = {
        "pfor",    "compare",   "--sizes", "2",      "--executors",
        "threads", "--latency", "0",       "--body", "{\"id\": {n}, \"x\": \"caf\xe9\"}",
        "--json",  json,        NULL};
    struct run r;
    run_pfor(argv, 30, &r);
    ASSERT_EQ(r.status, 1); /* the server refuses a body that is not UTF-8: 400 */
    json_t *j = load_json(json);
    json_t *p = json_object_get(j, "parameters");
    const char *body = json_string_value(json_object_get(p, "body_template"));
    if (!body)
        FAIL("parameters.body_template is missing");
    ASSERT(strncmp(body, "{\"id\": {n}, \"x\": \"caf", 21) == 0);
    json_decref(j);
    rm_dir(dir);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Names with single quotes (which gnuplot's own quoting turns into pairs,
 * and misreads in runs): a results folder with hundreds of them, too many
 * for the old buffer of gnuplot's -e assignments, and a plot named
 * ''q.svg.  Every plot is still drawn where it belongs. */
TEST(compare_plots_into_names_with_quotes)
{
    if (!have_gnuplot())
        SKIP("gnuplot is not installed (tools/setup.sh installs it)");
    char top[64];
    make_dir(top, sizeof top);
    char part[251]; /* 'a'a'a... */
    for (int i = 0; i < 250; i++)
        part[i] = i % 2 ? 'a' : '\'';
    part[250] = '\0';
    char deep[4096];
    size_t n = (size_t)snprintf(deep, sizeof deep, "%s", top);
    for (int i = 0; i < 13; i++) {
        n += (size_t)snprintf(deep + n, sizeof deep - n, "/%s", part);
        ASSERT(n < sizeof deep);
        ASSERT_EQ(mkdir(deep, 0755), 0);
    }
    char *argv[] = {"pfor",      "compare", "--sizes", "2",  "--executors", "threads",
                    "--latency", "1ms",     "--out",   deep, NULL};
    struct run r;
    run_pfor(argv, 60, &r);
    char svg[4200], png[4200];
    snprintf(svg, sizeof svg, "%s/compare-http.svg", deep);
    snprintf(png, sizeof png, "%s/compare-http.png", deep);
    bool have_svg = file_size(svg) > 0, have_png = file_size(png) > 0;
    int left = count_entries(deep);
    char plot[128];
    snprintf(plot, sizeof plot, "%s/''q.svg", top);
    char *argv2[] = {"pfor",      "compare", "--sizes", "2",  "--executors", "threads",
                     "--latency", "1ms",     "--plot",  plot, NULL};
    struct run r2;
    run_pfor(argv2, 60, &r2);
    bool have_plot = file_size(plot) > 0;
    ASSERT(nftw(top, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    if (r.status != 0 || r.err[0])
        FAIL("status %d, stderr: %s", r.status, r.err);
    ASSERT(have_svg && have_png);
    ASSERT_EQ(left, 5); /* csv, json, svg, png, gp */
    if (r2.status != 0 || r2.err[0])
        FAIL("--plot %s: status %d, stderr: %s", plot, r2.status, r2.err);
    ASSERT(have_plot);
}

/* CPU rows whose tasks failed (process pools under RLIMIT_NOFILE 8, as
 * above) have no speedup: how fast tasks fail says nothing, so the summary
 * ranks no pool by them. */
TEST(compare_cpu_failed_rows_have_no_speedup)
{
    char *args[] = {
        "pfor",      "compare", "--workload", "cpu", "--executors", "sequential,processes",
        "--workers", "1,2",     "--tasks",    "2",   "--bound",     "100000",
        NULL};
    struct run r;
    json_t *j = run_with_8_descriptors(args, &r);
    json_t *rows = json_object_get(j, "results");
    ASSERT_EQ(json_array_size(rows), 3);
    int failed_rows = 0, with_speedup = 0;
    for (size_t i = 1; i < 3; i++) {
        json_t *row = json_array_get(rows, i);
        if (num(row, "errors") == 0)
            continue;
        failed_rows++;
        with_speedup += !json_is_null(json_object_get(row, "speedup"));
        with_speedup += !json_is_null(json_object_get(row, "efficiency"));
    }
    json_decref(j);
    ASSERT_EQ(failed_rows, 2);
    ASSERT_EQ(r.status, 1);
    ASSERT_EQ(with_speedup, 0);
    if (failed_rows == 2 && strstr(r.out, "best speedup"))
        FAIL("a pool whose every row failed is ranked: %s", strstr(r.out, "best speedup"));
}

/* A row whose every request failed (here an API that answers 404 at once,
 * with an expected latency of 50 ms) has no efficiency: ideal/wall would
 * be far above 1, a speed that failing fast says nothing about. */
TEST(compare_row_that_failed_every_request_has_no_efficiency)
{
    pf_server *srv;
    ASSERT_OK(pf_server_start(&srv, NULL));
    char dir[64], json[128], url[96];
    make_dir(dir, sizeof dir);
    snprintf(json, sizeof json, "%s/f.json", dir);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/no-such-path", pf_server_port(srv));
    char *argv[] = {"pfor",   "compare", "--url", url,           "--latency",
                    "50ms",   "--sizes", "20",    "--executors", "threads,event",
                    "--json", json,      NULL};
    struct run r;
    run_pfor(argv, 30, &r);
    pf_server_stop(srv);
    ASSERT_EQ(r.status, 1);
    ASSERT(strstr(r.err, "all 40 requests failed") != NULL);
    json_t *j = load_json(json);
    json_t *rows = json_object_get(j, "results");
    ASSERT_EQ(json_array_size(rows), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *row = json_array_get(rows, i);
        ASSERT_EQ(num(row, "errors"), 20);
        ASSERT(num(row, "ideal_s") > 0);
        ASSERT(json_is_null(json_object_get(row, "efficiency")));
    }
    json_decref(j);
    rm_dir(dir);
}

/* A run refused before it measured anything (its port is taken) leaves no
 * results folder behind: the folders it made for --out are removed again,
 * and only those (one that existed stays). */
TEST(compare_refused_run_leaves_no_results_folder)
{
    pf_server *taken;
    ASSERT_OK(pf_server_start(&taken, NULL));
    char port_s[16], dir[64], out[192], kept[96];
    snprintf(port_s, sizeof port_s, "%u", pf_server_port(taken));
    make_dir(dir, sizeof dir);
    snprintf(kept, sizeof kept, "%s/kept", dir);
    ASSERT_EQ(mkdir(kept, 0755), 0);
    snprintf(out, sizeof out, "%s/new/results", kept);
    char *argv[] = {"pfor", "compare", "--quick", "--port", port_s, "--out", out, NULL};
    struct run r;
    run_pfor(argv, 30, &r);
    pf_server_stop(taken);
    struct stat st;
    bool out_left = stat(out, &st) == 0, new_left = false, kept_left = stat(kept, &st) == 0;
    snprintf(out, sizeof out, "%s/new", kept);
    new_left = stat(out, &st) == 0;
    snprintf(out, sizeof out, "%s/new/results", kept);
    rmdir(out); /* whatever was left: rm_dir removes one level */
    snprintf(out, sizeof out, "%s/new", kept);
    rmdir(out);
    rmdir(kept);
    rm_dir(dir);
    ASSERT_EQ(r.status, 2);
    ASSERT(strstr(r.err, "already in use") != NULL);
    ASSERT(!out_left && !new_left);
    ASSERT(kept_left);
}

/* A gnuplot that never finishes is killed after PFOR_GNUPLOT_TIMEOUT
 * seconds: the run ends (status 1, one line saying so) and leaves neither
 * gnuplot nor a half image behind. */
TEST(compare_hung_gnuplot_is_killed_after_its_time_limit)
{
    char bin[64], out[64], pidfile[128], svg[128];
    make_dir(out, sizeof out);
    fake_gnuplot(bin, sizeof bin,
                 "echo '<svg half' > \"$out_svg\"\n"
                 "echo $$ > \"${0%/*}/gnuplot.pid\"\n"
                 "exec sleep 60\n");
    snprintf(pidfile, sizeof pidfile, "%s/gnuplot.pid", bin);
    snprintf(svg, sizeof svg, "%s/h.svg", out);
    setenv("PFOR_GNUPLOT_TIMEOUT", "0.5", 1);
    char *argv[] = {"pfor",      "compare", "--sizes", "5", "--executors", "threads",
                    "--latency", "1ms",     "--plot",  svg, NULL};
    struct run r;
    run_pfor(argv, 30, &r);
    int gp = 0;
    FILE *p = fopen(pidfile, "r");
    if (p) {
        if (fscanf(p, "%d", &gp) != 1)
            gp = 0;
        fclose(p);
    }
    bool alive = gp > 0 && pf_test_pid_running(gp);
    if (alive)
        kill(gp, SIGKILL);
    int tmps = count_tmp_entries(out);
    bool image = access(svg, F_OK) == 0;
    rm_dir(out);
    rm_dir(bin);
    ASSERT(gp > 0); /* the stand-in ran */
    ASSERT(!alive);
    ASSERT_EQ(r.status, 1);
    ASSERT(strstr(r.err, "did not finish within 0.5 s") != NULL);
    ASSERT_EQ(tmps, 0);
    ASSERT(!image);
}
