/* st_walfs: see st_walfs.h. */
#include "st_walfs.h"
#include "st_gcfilter.h"

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/options.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <unistd.h>

namespace
{

constexpr uint64_t kZeroBlock = 64 * 1024;
const char kSpareName[] = "walhook-spare-"; /* + a number */
const char kZeros[kZeroBlock] = {};

/* The watch of WAL and directory syncs, one per process (st_walfs.h says
 * why). A sync that returned 0 waits for the syncs of the same file (or
 * directory: the kernel's error is per file) that ran beside it: those
 * begun before it returned, whose tickets (taken in order) are below the
 * next one at its return; never for one begun later, which cannot have
 * taken an error this one should have seen. RocksDB 7.8 never syncs a WAL
 * while another sync of it runs (DBImpl's LogWriterNumber::IsSyncing and
 * log_sync_cv_), so there the wait does not happen and a sync costs two
 * uncontended locks more. */
class SyncWatch
{
  public:
    /* a sync under way (on its caller's stack), and those of one file or
     * directory (under mu_) */
    struct Run {
        uint64_t tk;
        Run *next;
    };
    struct Runs {
        Run *head = nullptr;
    };
    /* the one process-wide watch; never freed (RocksDB's threads may sync
     * while static destructors run) */
    static SyncWatch &get()
    {
        static SyncWatch *w = new SyncWatch;
        return *w;
    }
    /* call() syncs (the target's Sync, Fsync, RangeSync or directory
     * Fsync): its status, or an error as above */
    template <typename F> rocksdb::IOStatus sync(Runs *runs, F call)
    {
        Run r;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (failed_)
                return refused("a sync failed earlier in this process; none is made or "
                               "trusted after one");
            r.tk = next_++;
            r.next = runs->head;
            runs->head = &r;
        }
        rocksdb::IOStatus s = call();
        std::unique_lock<std::mutex> g(mu_);
        for (Run **p = &runs->head; *p != nullptr; p = &(*p)->next)
            if (*p == &r) {
                *p = r.next;
                break;
            }
        if (!s.ok() && !failed_) {
            failed_ = true;
            const char *m = s.getState();
            why_ = m != nullptr ? m : s.ToString();
        }
        if (waiting_ > 0)
            cv_.notify_all();
        if (!s.ok())
            return s;
        uint64_t mark = next_;
        while (!failed_ && earliest(runs) < mark) {
            waiting_++;
            cv_.wait(g);
            waiting_--;
        }
        if (failed_)
            return refused("a sync failed while this one ran; its success proves nothing (the "
                           "kernel reports a writeback error to one sync only)");
        return s;
    }

  private:
    SyncWatch() = default;
    static uint64_t earliest(const Runs *runs)
    {
        uint64_t e = UINT64_MAX;
        for (const Run *r = runs->head; r != nullptr; r = r->next)
            if (r->tk < e)
                e = r->tk;
        return e;
    }
    /* caller holds mu_, failed_ is set */
    rocksdb::IOStatus refused(const char *why) const
    {
        return rocksdb::IOStatus::IOError(std::string(ST_WALFS_REFUSED) + why, why_);
    }
    std::mutex mu_;
    std::condition_variable cv_;
    bool failed_ = false;
    std::string why_; /* the first failed sync's message */
    uint64_t next_ = 0;
    int waiting_ = 0;
};

/* A WAL file: its syncs are watched (SyncWatch), and with a descriptor fd
 * (else -1), before each append that would pass the zeroed region, the
 * region grows to `chunk` bytes past the append's end (pwrite of zeros on
 * a second descriptor, beyond the data: a crash meanwhile leaves the synced
 * data and zeros after it). A failed zero write only stops the zeroing. */
class WalFile : public rocksdb::FSWritableFileOwnerWrapper
{
  public:
    WalFile(std::unique_ptr<rocksdb::FSWritableFile> &&t, int fd, uint64_t chunk,
            std::atomic<uint64_t> *zeroed)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(t)), fd_(fd), chunk_(chunk), total_(zeroed)
    {
    }
    ~WalFile() override
    {
        if (fd_ >= 0)
            ::close(fd_);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice &data, const rocksdb::IOOptions &o,
                             rocksdb::IODebugContext *d) override
    {
        ahead(end_ + data.size());
        rocksdb::IOStatus s = target()->Append(data, o, d);
        if (s.ok())
            end_ += data.size();
        return s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice &data, const rocksdb::IOOptions &o,
                             const rocksdb::DataVerificationInfo &v,
                             rocksdb::IODebugContext *d) override
    {
        ahead(end_ + data.size());
        rocksdb::IOStatus s = target()->Append(data, o, v, d);
        if (s.ok())
            end_ += data.size();
        return s;
    }
    /* not used for WALs without direct I/O; kept exact anyway */
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice &data, uint64_t off,
                                       const rocksdb::IOOptions &o,
                                       rocksdb::IODebugContext *d) override
    {
        ahead(off + data.size());
        rocksdb::IOStatus s = target()->PositionedAppend(data, off, o, d);
        if (s.ok() && off + data.size() > end_)
            end_ = off + data.size();
        return s;
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice &data, uint64_t off,
                                       const rocksdb::IOOptions &o,
                                       const rocksdb::DataVerificationInfo &v,
                                       rocksdb::IODebugContext *d) override
    {
        ahead(off + data.size());
        rocksdb::IOStatus s = target()->PositionedAppend(data, off, o, v, d);
        if (s.ok() && off + data.size() > end_)
            end_ = off + data.size();
        return s;
    }
    rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions &o,
                               rocksdb::IODebugContext *d) override
    {
        rocksdb::IOStatus s = target()->Truncate(size, o, d);
        if (s.ok()) {
            end_ = size;
            if (zeroed_ > size)
                zeroed_ = size;
        }
        return s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions &o, rocksdb::IODebugContext *d) override
    {
        synced();
        return SyncWatch::get().sync(&runs_, [&] { return target()->Sync(o, d); });
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions &o, rocksdb::IODebugContext *d) override
    {
        synced();
        return SyncWatch::get().sync(&runs_, [&] { return target()->Fsync(o, d); });
    }
    /* wal_bytes_per_sync (0 in the store): with the wait of
     * strict_bytes_per_sync, sync_file_range takes the error as fdatasync
     * does */
    rocksdb::IOStatus RangeSync(uint64_t off, uint64_t n, const rocksdb::IOOptions &o,
                                rocksdb::IODebugContext *d) override
    {
        return SyncWatch::get().sync(&runs_, [&] { return target()->RangeSync(off, n, o, d); });
    }
    /* RocksDB trims a closed WAL to its data when it preallocated; the
     * zeros are trimmed here in any case */
    rocksdb::IOStatus Close(const rocksdb::IOOptions &o, rocksdb::IODebugContext *d) override
    {
        rocksdb::IOStatus s = target()->Close(o, d);
        if (fd_ >= 0) {
            uint64_t end = end_;
            if (zeroed_ > end && ::ftruncate(fd_, (off_t)end) != 0 && s.ok())
                s = rocksdb::IOStatus::IOError("truncating the WAL's zeroed tail",
                                               std::strerror(errno));
            ::close(fd_);
            fd_ = -1;
        }
        return s;
    }

  private:
    /* a sync: was it of a small write (latency) or of a big one (a
     * backlog)? */
    void synced()
    {
        uint64_t end = end_;
        small_ = end - synced_end_ < chunk_ / 8;
        synced_end_ = end;
    }
    /* makes [0, upto) written: zeros from the zeroed end on, `chunk` past
     * upto. Only while syncs are of small writes, and not for a big write
     * (an eighth of the chunk or more): a big sync's one journal commit is
     * spread over many events, while zeros ahead of it (or ahead of the
     * small writes between a backlog's big ones, which the next big one
     * overwrites) would double the WAL's disk writes */
    void ahead(uint64_t upto)
    {
        if (fd_ < 0 || stopped_ || !small_ || upto <= zeroed_)
            return;
        uint64_t end = end_;
        uint64_t at0 = zeroed_ > end ? zeroed_ : end;
        if (upto - end >= chunk_ / 8 && upto > at0)
            return;
        uint64_t to = (upto + chunk_ + kZeroBlock - 1) / kZeroBlock * kZeroBlock;
        uint64_t at = at0;
        while (at < to) {
            size_t len = (size_t)(to - at < kZeroBlock ? to - at : kZeroBlock);
            ssize_t w = ::pwrite(fd_, kZeros, len, (off_t)at);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                stopped_ = true; /* what was zeroed stays until Close trims it */
                break;
            }
            at += (uint64_t)w;
            total_->fetch_add((uint64_t)w, std::memory_order_relaxed);
        }
        if (at > zeroed_)
            zeroed_ = at;
    }

    int fd_;
    uint64_t chunk_;
    std::atomic<uint64_t> *total_;
    bool stopped_ = false;
    /* Sync runs on the store's group-commit leader while other threads
     * append to the same WAL (RocksDB serializes the appends and the syncs,
     * not one against the other): what both touch is atomic */
    std::atomic<bool> small_{true};       /* the last sync was of a small write */
    std::atomic<uint64_t> synced_end_{0}; /* end_ at the last sync */
    std::atomic<uint64_t> end_{0};        /* the data's end */
    uint64_t zeroed_ = 0;                 /* [0, zeroed_) written (data or zeros) */
    SyncWatch::Runs runs_;
};

/* A directory RocksDB opens, its syncs watched as a WAL file's are: the
 * store's is the database's, which holds the WALs (synced after a WAL is
 * created, and after a table or MANIFEST file is). A WAL whose directory
 * entry was not synced may be gone after a crash however well its data was
 * synced, and a failed fsync of a directory is reported once, as a file's
 * is. */
class WalDir : public rocksdb::FSDirectoryWrapper
{
  public:
    explicit WalDir(std::unique_ptr<rocksdb::FSDirectory> &&t)
        : rocksdb::FSDirectoryWrapper(std::move(t))
    {
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions &o, rocksdb::IODebugContext *d) override
    {
        return SyncWatch::get().sync(&runs_, [&] { return FSDirectoryWrapper::Fsync(o, d); });
    }
    rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions &o, rocksdb::IODebugContext *d,
                                          const rocksdb::DirFsyncOptions &f) override
    {
        return SyncWatch::get().sync(
            &runs_, [&] { return FSDirectoryWrapper::FsyncWithDirOptions(o, d, f); });
    }

  private:
    SyncWatch::Runs runs_;
};

class WalFs : public rocksdb::FileSystemWrapper
{
  public:
    WalFs(const std::shared_ptr<rocksdb::FileSystem> &t, uint64_t chunk)
        : rocksdb::FileSystemWrapper(t), chunk_(chunk)
    {
    }
    const char *Name() const override
    {
        return "walhook-walfs";
    }
    rocksdb::IOStatus NewWritableFile(const std::string &f, const rocksdb::FileOptions &fo,
                                      std::unique_ptr<rocksdb::FSWritableFile> *r,
                                      rocksdb::IODebugContext *d) override
    {
        if (reusable(f))
            take_spare(f);
        rocksdb::IOStatus s = target()->NewWritableFile(f, fo, r, d);
        if (!s.ok() || !is_wal(f))
            return s;
        /* zeroing: with a descriptor of our own (else none: RocksDB's file
         * as is, its syncs watched) */
        int fd = -1;
        if (chunk_ > 0 && !fo.use_direct_writes && !fo.use_mmap_writes)
            fd = ::open(f.c_str(), O_WRONLY | O_CLOEXEC);
        WalFile *p = new (std::nothrow) WalFile(std::move(*r), fd, chunk_, &zeroed_);
        if (p == nullptr) {
            if (fd >= 0)
                ::close(fd);
            r->reset();
            return rocksdb::IOStatus::NoSpace("out of memory");
        }
        r->reset(p);
        return s;
    }
    rocksdb::IOStatus NewDirectory(const std::string &name, const rocksdb::IOOptions &o,
                                   std::unique_ptr<rocksdb::FSDirectory> *r,
                                   rocksdb::IODebugContext *d) override
    {
        rocksdb::IOStatus s = target()->NewDirectory(name, o, r, d);
        if (!s.ok())
            return s;
        WalDir *w = new (std::nothrow) WalDir(std::move(*r));
        if (w == nullptr) {
            r->reset();
            return rocksdb::IOStatus::NoSpace("out of memory");
        }
        r->reset(w);
        return s;
    }
    rocksdb::IOStatus DeleteFile(const std::string &f, const rocksdb::IOOptions &o,
                                 rocksdb::IODebugContext *d) override
    {
        if (reusable(f)) {
            switch (keep_spare(f)) {
            case Kept::kSpare:
            case Kept::kUnlinked:
                return rocksdb::IOStatus::OK();
            case Kept::kUnlinkFailed:
                return rocksdb::IOStatus::IOError("removing " + f +
                                                      " (renamed to a spare's name to empty it)",
                                                  std::strerror(errno));
            case Kept::kNo:
                break;
            }
        }
        return target()->DeleteFile(f, o, d);
    }
    uint64_t zeroed() const
    {
        return zeroed_.load(std::memory_order_relaxed);
    }
    uint64_t reused() const
    {
        return reused_.load(std::memory_order_relaxed);
    }

  private:
    /* Spare inodes. Creating a file costs ext4 an inode allocation, and
     * without a journal (ext4_fsync_nojournal) that allocation skips every
     * inode deleted in the last 30 s one by one (recently_deleted): a store
     * draining a backlog creates and deletes a WAL per memtable and a table
     * file per flush (deleted at once when the GC filter dropped all of
     * it), so each creation got slower the faster the store went (measured:
     * 5 % of the store's CPU on the wide backlog, 20 % of its flush
     * thread's). So a WAL or table file RocksDB deletes is renamed to
     * walhook-spare-N beside it, a name RocksDB does not parse and so never
     * opens or deletes, while fewer than kSpares are kept there, and emptied
     * (truncate: its blocks are freed as unlink would); the next WAL or
     * table file created in that directory is a spare renamed to its name,
     * then opened with O_TRUNC as any new file.
     *
     * Only a file nobody else has open: emptied, a file would lose its
     * bytes under any descriptor still open on it (unlink keeps them while
     * it is open): a reader of another process (walhook-store --dump
     * against a running store's directory, a backup), one of this process
     * st_walfs does not see (a table reader RocksDB still holds), or a
     * writer of RocksDB's still open (RocksDB 7.8 can delete a WAL before
     * an iterator's cleanup closes its writer, and that close's ftruncate
     * and hole punch would reach the file created next on the inode). The
     * kernel says so with a write lease (fcntl F_SETLEASE, F_WRLCK): granted
     * only while no other descriptor of any process has the file open
     * (counted at open, so an open racing the grant either makes it fail or
     * finds the lease), and while it is held, an open of the file by anyone
     * else waits in the kernel until it is released (lease break). So: a
     * descriptor of our own, the lease, the rename, the lease taken again
     * (fails if someone opened the file by its old name meanwhile: they
     * keep it, unlinked), the truncate, the lease released at once. A file
     * without a lease (another descriptor, another hard link, or a file
     * system or setting without leases: EINVAL, EACCES) is unlinked as
     * before. Left: an open that had looked the old name up just before the
     * rename and has not yet counted itself at the second lease (a few
     * instructions inside one open call) gets the emptied file (take_spare
     * passes a spare over while anyone has it open, so it never gets
     * another file's bytes). On overlayfs the lease counts the overlay's
     * descriptors only: a mapping whose descriptor was closed holds the
     * layer's file and is not seen (emptied, its reader gets SIGBUS).
     *
     * A store killed between the steps leaves a spare with bytes (emptied
     * by take_spare before it gets a new file's name), or an empty file
     * under a new file's name (take_spare's rename done, not the open:
     * RocksDB removes it, or replays it as an empty WAL). */
    static constexpr int kSpares = 4;
    enum class Kept { kNo, kSpare, kUnlinked, kUnlinkFailed };
    static bool ends_with(const std::string &f, const char *suffix)
    {
        size_t n = std::strlen(suffix);
        return f.size() > n && f.compare(f.size() - n, n, suffix) == 0;
    }
    /* spares only with the zero-fill (chunk_ 0: syncs watched only) */
    bool reusable(const std::string &f) const
    {
        return chunk_ > 0 && (is_wal(f) || ends_with(f, ".sst"));
    }
    static std::string spare_name(const std::string &f, int i)
    {
        size_t slash = f.find_last_of('/');
        std::string dir = slash == std::string::npos ? std::string(".") : f.substr(0, slash);
        return dir + "/" + kSpareName + std::to_string(i);
    }
    /* a write lease on fd (see above), which breaks without a signal: the
     * lease break's notice (SIGIO by default, which ends a process that
     * does not handle it; it goes to the process that took the lease) is
     * SIGWINCH, ignored by default and sent to nobody once the owner is
     * cleared right after the grant (F_SETLEASE makes the taker the
     * owner again each time) */
    static bool lease(int fd)
    {
        if (::fcntl(fd, F_SETLEASE, F_WRLCK) != 0)
            return false;
        ::fcntl(fd, F_SETOWN, 0);
        return true;
    }
    /* RocksDB deletes f: kept as a spare, unlinked here (after a rename to
     * a spare's name), or left to the target's DeleteFile (kNo) */
    Kept keep_spare(const std::string &f)
    {
        /* O_NONBLOCK: an open that would wait for someone else's lease
         * fails at once */
        int fd = ::open(f.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
        if (fd < 0)
            return Kept::kNo;
        Kept k = Kept::kNo;
        struct stat st;
        std::string sp;
        if (::fcntl(fd, F_SETSIG, SIGWINCH) == 0 && lease(fd) && ::fstat(fd, &st) == 0 &&
            S_ISREG(st.st_mode) && st.st_nlink == 1 && claim(f, &sp)) {
            if (lease(fd) && ::ftruncate(fd, 0) == 0) {
                k = Kept::kSpare;
            } else {
                k = ::unlink(sp.c_str()) == 0 ? Kept::kUnlinked : Kept::kUnlinkFailed;
            }
        }
        int e = errno;
        /* the lease goes with the open file, not with fd: a child forked
         * meanwhile would hold it past close */
        ::fcntl(fd, F_SETLEASE, F_UNLCK);
        ::close(fd);
        /* only now may take_spare have it (our lease and descriptor would
         * make it pass it over) */
        if (!sp.empty())
            unclaim(sp);
        errno = e;
        return k;
    }
    /* renames f to a free spare's name (into *sp), marked in use until
     * unclaim: take_spare leaves it while it is emptied */
    bool claim(const std::string &f, std::string *sp)
    {
        std::lock_guard<std::mutex> g(mu_);
        for (int i = 0; i < kSpares; i++) {
            std::string n = spare_name(f, i);
            if (::renameat2(AT_FDCWD, f.c_str(), AT_FDCWD, n.c_str(), RENAME_NOREPLACE) == 0) {
                emptying_.insert(n);
                *sp = std::move(n);
                return true;
            }
            if (errno != EEXIST)
                return false;
        }
        return false;
    }
    void unclaim(const std::string &sp)
    {
        std::lock_guard<std::mutex> g(mu_);
        emptying_.erase(sp);
    }
    /* a new file f takes a spare's inode when one is there (f does not
     * exist yet: RocksDB numbers its files) */
    void take_spare(const std::string &f)
    {
        std::lock_guard<std::mutex> g(mu_);
        for (int i = 0; i < kSpares; i++) {
            std::string sp = spare_name(f, i);
            if (emptying_.count(sp) != 0)
                continue;
            int r = take(sp, f);
            if (r > 0) {
                reused_.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            if (r < 0)
                return;
        }
    }
    /* renames spare sp to f when nothing else has it: a regular file with
     * one link and, where the file system has leases, nobody else's
     * descriptor (the write lease, as in keep_spare), emptied first. A
     * reader that opened a deleted file by its name just as keep_spare
     * renamed it (the race keep_spare leaves), or a backup copying the
     * directory, keeps what it reads, and a copy of the directory made with
     * hard links is not written to; and a spare's bytes (one a store killed
     * inside keep_spare left) never get RocksDB's name, not even for the
     * moment before the new file's O_TRUNC: a store killed then, or an open
     * that fails then, would leave them under a new WAL's name, and RocksDB
     * replays the WAL it finds there (an old WAL's records replayed bring
     * back what was deleted or overwritten since). 1 taken, 0 not (another
     * spare may be), -1 the rename failed (f exists: no other either). */
    static int take(const std::string &sp, const std::string &f)
    {
        int fd = ::open(sp.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
        if (fd < 0)
            return 0;
        int r = 0;
        struct stat st;
        if (::fcntl(fd, F_SETSIG, SIGWINCH) == 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_nlink == 1 && (lease(fd) || errno != EAGAIN) &&
            (st.st_size == 0 || ::ftruncate(fd, 0) == 0)) {
            if (::renameat2(AT_FDCWD, sp.c_str(), AT_FDCWD, f.c_str(), RENAME_NOREPLACE) == 0)
                r = 1;
            else if (errno != ENOENT)
                r = -1;
        }
        ::fcntl(fd, F_SETLEASE, F_UNLCK);
        ::close(fd);
        return r;
    }
    /* RocksDB names its WALs <number>.log (the info log is LOG, LOG.old.*) */
    static bool is_wal(const std::string &f)
    {
        return ends_with(f, ".log");
    }
    uint64_t chunk_;
    std::atomic<uint64_t> zeroed_{0};
    std::atomic<uint64_t> reused_{0};
    std::mutex mu_;                  /* the spares of every directory */
    std::set<std::string> emptying_; /* spares being emptied (claim) */
};

} // namespace

struct st_walfs {
    std::shared_ptr<WalFs> fs;
    std::unique_ptr<rocksdb::Env> env;
};

extern "C" st_walfs *st_walfs_install(rocksdb_options_t *o, uint64_t chunk, char *err,
                                      size_t errlen)
{
    if (!st_rocks_layout_ok(o)) {
        if (err != nullptr && errlen > 0)
            std::snprintf(err, errlen,
                          "rocksdb_options_t is not the layout st_walfs was built for: "
                          "WAL files are not zero-filled ahead, nor their syncs watched");
        return nullptr;
    }
    if (chunk > 0 && chunk < kZeroBlock)
        chunk = kZeroBlock;
    chunk = (chunk + kZeroBlock - 1) / kZeroBlock * kZeroBlock;
    st_walfs *w = new (std::nothrow) st_walfs;
    if (w == nullptr) {
        if (err != nullptr && errlen > 0)
            std::snprintf(err, errlen, "out of memory");
        return nullptr;
    }
    /* not make_shared: its tag is a global symbol without our prefix */
    WalFs *fs = new (std::nothrow) WalFs(rocksdb::FileSystem::Default(), chunk);
    if (fs == nullptr) {
        delete w;
        if (err != nullptr && errlen > 0)
            std::snprintf(err, errlen, "out of memory");
        return nullptr;
    }
    w->fs.reset(fs);
    w->env = rocksdb::NewCompositeEnv(w->fs);
    o->rep.env = w->env.get();
    return w;
}

extern "C" void st_walfs_free(st_walfs *w)
{
    delete w;
}

extern "C" uint64_t st_walfs_zeroed(const st_walfs *w)
{
    return w == nullptr ? 0 : w->fs->zeroed();
}

extern "C" uint64_t st_walfs_reused(const st_walfs *w)
{
    return w == nullptr ? 0 : w->fs->reused();
}

extern "C" int st_walfs_remove_spares(const char *dir, char *err, size_t errlen)
{
    DIR *d = ::opendir(dir);
    if (d == nullptr) {
        if (err != nullptr && errlen > 0)
            std::snprintf(err, errlen, "removing the spares of %s: %s", dir, std::strerror(errno));
        return -1;
    }
    int rc = 0;
    const size_t pl = sizeof(kSpareName) - 1;
    for (struct dirent *e; (e = ::readdir(d)) != nullptr;) {
        const char *n = e->d_name;
        if (std::strncmp(n, kSpareName, pl) != 0 || n[pl] == '\0' ||
            std::strspn(n + pl, "0123456789") != std::strlen(n + pl))
            continue;
        if (::unlinkat(::dirfd(d), n, 0) != 0 && errno != ENOENT && rc == 0) {
            rc = -1;
            if (err != nullptr && errlen > 0)
                std::snprintf(err, errlen, "removing %s/%s: %s", dir, n, std::strerror(errno));
        }
    }
    ::closedir(d);
    return rc;
}
