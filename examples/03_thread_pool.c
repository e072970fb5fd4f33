/*
 * Section 3 of the article: the same loop on a thread pool.
 *
 *   ./03_thread_pool [URL]
 *
 * The only change from the process pool is the executor kind: PF_THREADS.
 * max_workers defaults to Python's min(32, cores + 4), so on 2 cores six
 * requests wait on the API at once and the loop takes about a sixth of the
 * sequential time.  (In C, threads also run CPU-bound work in parallel:
 * there is no global interpreter lock.)
 */
#include "article.h"

int main(int argc, char **argv)
{
    pf_server *server;
    const char *url = article_api(argc, argv, &server);

    double t0 = article_now();
    int created = article_loop(PF_THREADS, PF_DEFAULT_WORKERS, url, ARTICLE_REQUESTS);
    double dt = article_now() - t0;

    printf("thread pool (%d workers): %d requests, %d created, %.2f s\n",
           pf_default_workers(PF_THREADS), ARTICLE_REQUESTS, created, dt);
    pf_server_stop(server);
    return created == ARTICLE_REQUESTS ? 0 : 1;
}
