/*
 * fsync_fault.c: a disk that fails to flush, for spec/sys_spec.lua.
 *
 * Preloaded (LD_PRELOAD) into a fotahost the spec runs, it makes fsync()
 * fail with EIO on a regular file (FSYNC_FAULT=file) or on a directory
 * (FSYNC_FAULT=dir), as a dying SD card or a full thin volume does, and
 * passes every other call through. The spec builds it with cc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fsync(int fd)
{
    static int (*real_fsync)(int);
    const char *fault = getenv("FSYNC_FAULT");
    struct stat st;

    if (real_fsync == NULL)
        real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (fault != NULL && fstat(fd, &st) == 0) {
        if ((strcmp(fault, "file") == 0 && S_ISREG(st.st_mode)) ||
            (strcmp(fault, "dir") == 0 && S_ISDIR(st.st_mode))) {
            errno = EIO;
            return -1;
        }
    }
    return real_fsync(fd);
}
