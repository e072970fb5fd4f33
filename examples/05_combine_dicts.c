/*
 * Section 5 of the article: no shared dictionary at all.  Each task returns
 * its key-value pair, and the pairs are combined into one dictionary at the
 * end.
 *
 *   ./05_combine_dicts [URL]
 *
 * Python:  futures = [executor.submit(post_req, i, data) for i in range(500)]
 *          d = {}
 *          for f in futures: d.update(f.result())
 *
 * pf_dict_combine runs the task over the request numbers (pf_map, in chunks,
 * a bounded number in flight) and merges every returned pair in input order,
 * with a chosen rule for keys returned twice (PF_COMBINE_LAST: as
 * dict.update).  It prints the same dictionary as example 04.
 */
#include "article.h"

/* post_req(request_number, data) -> {request_number: status} */
static int post_and_return(pf_task *t, const void *arg, size_t len)
{
    long status;
    int rc = article_post(t, &status);
    if (rc != 0)
        return rc;
    char key[16], value[16];
    int32_t number;
    memcpy(&number, arg, sizeof number);
    (void)len;
    snprintf(key, sizeof key, "%d", (int)number);
    snprintf(value, sizeof value, "%ld", status);
    return pf_task_return_pair(t, key, strlen(key), value, strlen(value));
}

int main(int argc, char **argv)
{
    pf_init();
    pf_server *server;
    const char *url = article_api(argc, argv, &server);

    pf_executor_opts o = {.max_workers = PF_DEFAULT_WORKERS,
                          .initializer = article_worker_init,
                          .finalizer = article_worker_fini,
                          .init_arg = url,
                          .init_arg_len = strlen(url) + 1};
    pf_executor *ex;
    if (pf_executor_create(&ex, PF_PROCESSES, &o) != 0)
        return 1;
    int32_t numbers[ARTICLE_REQUESTS];
    for (int i = 0; i < ARTICLE_REQUESTS; i++)
        numbers[i] = i;

    pf_dict *d; /* d = {} */
    pf_dict_open_local(&d, NULL);
    pf_map_opts one_per_task = {.chunksize = 1}; /* requests wait on the API: spread them */
    int rc = pf_dict_combine(d, ex, post_and_return, numbers, ARTICLE_REQUESTS, sizeof *numbers,
                             PF_COMBINE_LAST, &one_per_task);
    pf_executor_destroy(ex);

    article_print_dict(d);
    size_t n = 0;
    pf_dict_len(d, &n);
    printf("%zu requests combined at the end (%s)\n", n,
           rc == 0 ? "all succeeded" : pf_strerror(rc));
    pf_dict_close(d);
    pf_server_stop(server);
    pf_fini();
    return rc == 0 && n == ARTICLE_REQUESTS ? 0 : 1;
}
