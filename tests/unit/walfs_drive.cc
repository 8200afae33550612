/* walfs_drive: see walfs_drive.h. */
#include "walfs_drive.h"
#include "../../services/store/st_gcfilter.h"

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <cstdio>
#include <memory>
#include <new>

struct wfd_file {
    std::unique_ptr<rocksdb::FSWritableFile> f;
};

struct wfd_dir {
    std::unique_ptr<rocksdb::FSDirectory> d;
};

namespace
{

int failed(const rocksdb::IOStatus &s, char *err, size_t errlen)
{
    std::snprintf(err, errlen, "%s", s.ToString().c_str());
    return -1;
}

/* o's Env's file system, or NULL (err says why) */
rocksdb::FileSystem *fs_of(rocksdb_options_t *o, char *err, size_t errlen)
{
    if (!st_rocks_layout_ok(o) || o->rep.env == nullptr) {
        std::snprintf(err, errlen, "rocksdb_options_t: not the layout st_walfs was built for");
        return nullptr;
    }
    return o->rep.env->GetFileSystem().get();
}

} // namespace

extern "C" wfd_file *wfd_file_open(rocksdb_options_t *o, const char *path, char *err, size_t errlen)
{
    rocksdb::FileSystem *fs = fs_of(o, err, errlen);
    if (fs == nullptr)
        return nullptr;
    wfd_file *f = new (std::nothrow) wfd_file;
    if (f == nullptr) {
        std::snprintf(err, errlen, "out of memory");
        return nullptr;
    }
    rocksdb::IOStatus s = fs->NewWritableFile(path, rocksdb::FileOptions(), &f->f, nullptr);
    if (!s.ok()) {
        failed(s, err, errlen);
        delete f;
        return nullptr;
    }
    return f;
}

extern "C" int wfd_file_append(wfd_file *f, const void *p, size_t n, char *err, size_t errlen)
{
    rocksdb::IOStatus s =
        f->f->Append(rocksdb::Slice((const char *)p, n), rocksdb::IOOptions(), nullptr);
    return s.ok() ? 0 : failed(s, err, errlen);
}

extern "C" int wfd_file_sync(wfd_file *f, char *err, size_t errlen)
{
    rocksdb::IOStatus s = f->f->Sync(rocksdb::IOOptions(), nullptr);
    return s.ok() ? 0 : failed(s, err, errlen);
}

extern "C" void wfd_file_free(wfd_file *f)
{
    if (f == nullptr)
        return;
    f->f->Close(rocksdb::IOOptions(), nullptr).PermitUncheckedError();
    delete f;
}

extern "C" wfd_dir *wfd_dir_open(rocksdb_options_t *o, const char *path, char *err, size_t errlen)
{
    rocksdb::FileSystem *fs = fs_of(o, err, errlen);
    if (fs == nullptr)
        return nullptr;
    wfd_dir *d = new (std::nothrow) wfd_dir;
    if (d == nullptr) {
        std::snprintf(err, errlen, "out of memory");
        return nullptr;
    }
    rocksdb::IOStatus s = fs->NewDirectory(path, rocksdb::IOOptions(), &d->d, nullptr);
    if (!s.ok()) {
        failed(s, err, errlen);
        delete d;
        return nullptr;
    }
    return d;
}

extern "C" int wfd_dir_sync(wfd_dir *d, char *err, size_t errlen)
{
    rocksdb::IOStatus s = d->d->FsyncWithDirOptions(
        rocksdb::IOOptions(), nullptr,
        rocksdb::DirFsyncOptions(rocksdb::DirFsyncOptions::FsyncReason::kNewFileSynced));
    return s.ok() ? 0 : failed(s, err, errlen);
}

extern "C" void wfd_dir_free(wfd_dir *d)
{
    if (d == nullptr)
        return;
    d->d->Close(rocksdb::IOOptions(), nullptr).PermitUncheckedError();
    delete d;
}
