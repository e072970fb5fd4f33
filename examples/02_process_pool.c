/*
 * Section 2 of the article: the same loop on a process pool.
 *
 *   ./02_process_pool [URL]
 *
 * Python:  with concurrent.futures.ProcessPoolExecutor() as executor:
 *              futures = [executor.submit(post_req, data) for _ in range(500)]
 *              for f in futures: f.result()
 *
 * pfor forks its workers from a fork server, so post_req crosses to them as
 * itself: no pickling.  Each worker opens one libcurl handle in its
 * initializer and keeps the connection.  max_workers defaults to the number
 * of cores, as in Python, so on 2 cores the loop takes about half the time of
 * the sequential one.  A worker that crashed would fail only its own request.
 */
#include "article.h"

int main(int argc, char **argv)
{
    pf_init(); /* start the fork server before the mock API starts its threads */
    pf_server *server;
    const char *url = article_api(argc, argv, &server);

    double t0 = article_now();
    int created = article_loop(PF_PROCESSES, PF_DEFAULT_WORKERS, url, ARTICLE_REQUESTS);
    double dt = article_now() - t0;

    printf("process pool (%d workers): %d requests, %d created, %.2f s\n",
           pf_default_workers(PF_PROCESSES), ARTICLE_REQUESTS, created, dt);
    pf_server_stop(server);
    pf_fini();
    return created == ARTICLE_REQUESTS ? 0 : 1;
}
