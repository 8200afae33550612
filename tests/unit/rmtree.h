/* Removing a unit test's temporary directory tree (its RocksDB files). */
#ifndef WH_TEST_RMTREE_H
#define WH_TEST_RMTREE_H

#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int wh_test_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Removes dir and everything below it (links not followed). */
static inline void wh_test_rmtree(const char *dir)
{
    nftw(dir, wh_test_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
