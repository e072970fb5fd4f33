/*
 * Section 1 of the article: a loop of POST requests, one after the other.
 *
 *   ./01_sequential [URL]
 *
 * Each request waits for the API's answer (20 ms on the built-in mock, 200 ms
 * on the article's API), so N requests take N times that.  The loop runs on
 * pfor's sequential executor: the same submission code as the pools of the
 * next two examples, run in the calling thread, one task at a time.
 */
#include "article.h"

int main(int argc, char **argv)
{
    pf_server *server;
    const char *url = article_api(argc, argv, &server);

    double t0 = article_now();
    int created = article_loop(PF_SEQUENTIAL, 1, url, ARTICLE_REQUESTS);
    double dt = article_now() - t0;

    printf("sequential: %d requests, %d created, %.2f s\n", ARTICLE_REQUESTS, created, dt);
    pf_server_stop(server);
    return created == ARTICLE_REQUESTS ? 0 : 1;
}
