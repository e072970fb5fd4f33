/*
 * Section 4 of the article: the tasks store their results in a dictionary
 * that every worker shares.
 *
 *   ./04_shared_dict [URL]
 *
 * Python:  with Manager() as manager:
 *              d = manager.dict()
 *              for i in range(500): executor.submit(post_req, d, i, data)
 *          (every d[i] = status is a round trip to the manager process)
 *
 * pfor's shared dict lives in shared memory: the process-pool workers write
 * it directly, with a lock per stripe, no server in between.  A task gets the
 * dict through a pf_dict_ref copied into its argument bytes; d["count"] is
 * incremented atomically, so no update is lost (d[k] += 1 on a Manager dict
 * loses them).  A worker killed while it writes leaves the dict whole.
 */
#include "article.h"

struct request {
    pf_dict_ref dict;
    int32_t number;
};

/* post_req(d, request_number, data): d[request_number] = status */
static int post_and_store(pf_task *t, const void *arg, size_t len)
{
    (void)len;
    const struct request *r = arg;
    long status;
    int rc = article_post(t, &status);
    if (rc != 0)
        return rc;
    pf_dict *d;
    if ((rc = pf_dict_from_ref(&d, &r->dict)) != 0)
        return pf_task_fail(t, rc, "dict: %s", pf_strerror(rc));
    char key[16];
    snprintf(key, sizeof key, "%d", (int)r->number);
    rc = pf_dict_set_i64(d, key, strlen(key), status);
    if (rc == 0)
        rc = pf_dict_incr(d, PF_DICT_STR("count"), 1, NULL);
    pf_dict_close(d);
    return rc ? pf_task_fail(t, rc, "dict: %s", pf_strerror(rc)) : 0;
}

int main(int argc, char **argv)
{
    pf_init();
    pf_server *server;
    const char *url = article_api(argc, argv, &server);

    pf_dict *d; /* d = manager.dict() */
    if (pf_dict_create_shm(&d, NULL, NULL) != 0)
        return 1;
    struct request r;
    pf_dict_ref_get(d, &r.dict);

    pf_executor_opts o = {.max_workers = PF_DEFAULT_WORKERS,
                          .initializer = article_worker_init,
                          .finalizer = article_worker_fini,
                          .init_arg = url,
                          .init_arg_len = strlen(url) + 1};
    pf_executor *ex;
    if (pf_executor_create(&ex, PF_PROCESSES, &o) != 0)
        return 1;
    for (r.number = 0; r.number < ARTICLE_REQUESTS; r.number++)
        pf_submit(ex, post_and_store, &r, sizeof r, NULL); /* no futures kept */
    pf_executor_destroy(ex);                               /* waits for every task */

    int64_t count = 0;
    pf_dict_get_i64(d, PF_DICT_STR("count"), &count);
    pf_dict_delete(d, PF_DICT_STR("count"));
    article_print_dict(d);
    printf("%lld requests stored by %d processes\n", (long long)count,
           pf_default_workers(PF_PROCESSES));
    pf_dict_close(d); /* the owner's close removes it from /dev/shm */
    pf_server_stop(server);
    pf_fini();
    return count == ARTICLE_REQUESTS ? 0 : 1;
}
