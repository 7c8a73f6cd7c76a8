/*
 * spawnstat: runs a command N times and prints its wall-clock time
 * (median, mean, min, in ms) and peak RSS (max over the runs, in KiB).
 *
 *   spawnstat N command [args...]
 *
 * The child is started with posix_spawn (vfork-like), so the peak RSS is
 * the command's own, not a copy of this process.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int i, n;
    double *ms, sum = 0;
    long maxrss = 0;

    if (argc < 3 || (n = atoi(argv[1])) < 1) {
        fprintf(stderr, "usage: spawnstat N command [args...]\n");
        return 2;
    }
    ms = calloc((size_t)n, sizeof *ms);
    if (ms == NULL)
        return 2;
    for (i = 0; i < n; i++) {
        struct timespec t0, t1;
        struct rusage ru;
        pid_t pid;
        int status;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (posix_spawnp(&pid, argv[2], NULL, NULL, argv + 2, environ) != 0) {
            perror(argv[2]);
            return 2;
        }
        if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "spawnstat: %s failed\n", argv[2]);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        sum += ms[i];
        if (ru.ru_maxrss > maxrss)
            maxrss = ru.ru_maxrss;
    }
    qsort(ms, (size_t)n, sizeof *ms, cmp);
    printf("%.3f %.3f %.3f %ld\n", ms[n / 2], sum / n, ms[0], maxrss);
    free(ms);
    return 0;
}
