/* st_bgio: see st_bgio.h. */
#include "st_bgio.h"
#include "st_gcfilter.h"

#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/rate_limiter.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace
{

int64_t now_us()
{
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

class CompactionLog : public rocksdb::EventListener
{
  public:
    void OnCompactionBegin(rocksdb::DB *, const rocksdb::CompactionJobInfo &ci) override
    {
        st_bgio_rec r;
        std::memset(&r, 0, sizeof(r));
        std::snprintf(r.cf, sizeof(r.cf), "%s", ci.cf_name.c_str());
        r.manual = ci.compaction_reason == rocksdb::CompactionReason::kManualCompaction;
        r.output_level = ci.output_level;
        r.job_id = ci.job_id;
        r.begin_us = now_us();
        std::lock_guard<std::mutex> g(mu_);
        counts_[ci.cf_name]++;
        if (logging_ && log_.size() < ST_BGIO_LOG_MAX)
            log_.push_back(r);
    }
    void OnFlushCompleted(rocksdb::DB *, const rocksdb::FlushJobInfo &fi) override
    {
        st_bgio_rec r;
        std::memset(&r, 0, sizeof(r));
        std::snprintf(r.cf, sizeof(r.cf), "%s", fi.cf_name.c_str());
        r.flush = 1;
        r.job_id = fi.job_id;
        r.begin_us = r.end_us = now_us();
        std::lock_guard<std::mutex> g(mu_);
        if (logging_ && log_.size() < ST_BGIO_LOG_MAX)
            log_.push_back(r);
    }
    void OnCompactionCompleted(rocksdb::DB *, const rocksdb::CompactionJobInfo &ci) override
    {
        int64_t t = now_us();
        std::lock_guard<std::mutex> g(mu_);
        for (size_t i = log_.size(); i-- > 0;)
            if (!log_[i].flush && log_[i].job_id == ci.job_id && log_[i].end_us == 0 &&
                ci.cf_name == log_[i].cf) {
                log_[i].end_us = t;
                break;
            }
    }
    const char *Name() const override
    {
        return "walhook-compaction-log";
    }
    uint64_t count(const char *cf)
    {
        std::lock_guard<std::mutex> g(mu_);
        auto it = counts_.find(cf);
        return it == counts_.end() ? 0 : it->second;
    }
    void start()
    {
        std::lock_guard<std::mutex> g(mu_);
        logging_ = true;
    }
    size_t copy(st_bgio_rec *out, size_t max)
    {
        std::lock_guard<std::mutex> g(mu_);
        for (size_t i = 0; i < max && i < log_.size(); i++)
            out[i] = log_[i];
        return log_.size();
    }

  private:
    std::mutex mu_;
    std::map<std::string, uint64_t> counts_;
    std::vector<st_bgio_rec> log_;
    bool logging_ = false;
};

/* store.io_rate_bytes: RocksDB's generic limiter for compaction writes
 * only. A flush asks at IO_HIGH (IO_USER while writes are stopped or
 * delayed, as a compaction then does): those pass at once. A flush cannot
 * be put off: it is what lets writes go on, and RocksDB stops every
 * column family's writes while one has its memtables full. Limited, it
 * capped the store's sustained Appends at io_rate_bytes of event bytes
 * (128 MiB/s: 343k orders-shaped events/s, to the percent, in
 * bench/tenants.sh), stalling every tenant behind the fastest one. A job
 * asking at IO_USER runs while writes are stopped or delayed: limiting it
 * would only make the stall last longer. What flushes write is what was
 * appended (bounded by the tenants' write budgets, when set); what
 * compactions write, by this. */
class CompactionLimiter : public rocksdb::RateLimiter
{
  public:
    explicit CompactionLimiter(rocksdb::RateLimiter *inner)
        : rocksdb::RateLimiter(rocksdb::RateLimiter::Mode::kWritesOnly), inner_(inner)
    {
    }
    void SetBytesPerSecond(int64_t bytes_per_second) override
    {
        inner_->SetBytesPerSecond(bytes_per_second);
    }
    void Request(const int64_t bytes, const rocksdb::Env::IOPriority pri) override
    {
        Request(bytes, pri, nullptr);
    }
    /* RequestToken (the base's: capped at GetSingleBurstBytes, writes
     * only) calls Request(bytes, pri, stats, op_type), the base's, which
     * calls this one */
    using rocksdb::RateLimiter::Request;
    void Request(const int64_t bytes, const rocksdb::Env::IOPriority pri,
                 rocksdb::Statistics *stats) override
    {
        int k = passes(pri);
        if (k >= 0) {
            passed_[k].fetch_add(bytes, std::memory_order_relaxed);
            npassed_[k].fetch_add(1, std::memory_order_relaxed);
            return;
        }
        limited_.fetch_add(bytes, std::memory_order_relaxed);
        inner_->Request(bytes, pri, stats);
    }
    int64_t GetSingleBurstBytes() const override
    {
        return inner_->GetSingleBurstBytes();
    }
    /* the inner limiter's, and what passed at once */
    int64_t GetTotalBytesThrough(const rocksdb::Env::IOPriority pri) const override
    {
        return inner_->GetTotalBytesThrough(pri) + sum(passed_, pri);
    }
    int64_t GetTotalRequests(const rocksdb::Env::IOPriority pri) const override
    {
        return inner_->GetTotalRequests(pri) + sum(npassed_, pri);
    }
    rocksdb::Status GetTotalPendingRequests(int64_t *total_pending_requests,
                                            const rocksdb::Env::IOPriority pri) const override
    {
        return inner_->GetTotalPendingRequests(total_pending_requests, pri);
    }
    int64_t GetBytesPerSecond() const override
    {
        return inner_->GetBytesPerSecond();
    }
    uint64_t limited() const
    {
        return (uint64_t)limited_.load(std::memory_order_relaxed);
    }
    uint64_t passed() const
    {
        return (uint64_t)sum(passed_, rocksdb::Env::IO_TOTAL);
    }

  private:
    /* the index in passed_ and npassed_ of a priority that passes at once
     * (0: IO_HIGH, 1: IO_USER); -1: limited */
    static int passes(rocksdb::Env::IOPriority pri)
    {
        return pri >= rocksdb::Env::IO_HIGH && pri < rocksdb::Env::IO_TOTAL
                   ? (int)(pri - rocksdb::Env::IO_HIGH)
                   : -1;
    }
    /* what passed at once at pri (IO_TOTAL: at both) */
    static int64_t sum(const std::atomic<int64_t> *a, rocksdb::Env::IOPriority pri)
    {
        if (pri == rocksdb::Env::IO_TOTAL)
            return a[0].load(std::memory_order_relaxed) + a[1].load(std::memory_order_relaxed);
        int k = passes(pri);
        return k < 0 ? 0 : a[k].load(std::memory_order_relaxed);
    }
    std::unique_ptr<rocksdb::RateLimiter> inner_;
    std::atomic<int64_t> limited_{0};
    std::atomic<int64_t> passed_[2] = {{0}, {0}}, npassed_[2] = {{0}, {0}};
};

} // namespace

struct st_bgio {
    std::shared_ptr<CompactionLimiter> rl;
    std::shared_ptr<CompactionLog> log;
};

extern "C" st_bgio *st_bgio_install(rocksdb_options_t *o, int64_t rate, char *err, size_t errlen)
{
    if (!st_rocks_layout_ok(o)) {
        if (err != nullptr && errlen > 0)
            std::snprintf(err, errlen,
                          "rocksdb_options_t is not the layout st_bgio was built for: "
                          "store.io_rate_bytes cannot change at runtime (restart to apply)");
        return nullptr;
    }
    st_bgio *b = new (std::nothrow) st_bgio;
    if (b == nullptr) {
        if (err != nullptr && errlen > 0)
            std::snprintf(err, errlen, "out of memory");
        return nullptr;
    }
    b->rl.reset(new CompactionLimiter(rocksdb::NewGenericRateLimiter(rate, 100 * 1000, 10)));
    b->log.reset(new CompactionLog());
    o->rep.rate_limiter = b->rl;
    o->rep.listeners.push_back(b->log);
    return b;
}

extern "C" void st_bgio_free(st_bgio *b)
{
    delete b;
}

extern "C" void st_bgio_set_rate(st_bgio *b, int64_t rate)
{
    if (b != nullptr && rate > 0 && rate != b->rl->GetBytesPerSecond())
        b->rl->SetBytesPerSecond(rate);
}

extern "C" int64_t st_bgio_rate(const st_bgio *b)
{
    return b == nullptr ? 0 : b->rl->GetBytesPerSecond();
}

extern "C" void st_bgio_bytes(const st_bgio *b, uint64_t *limited, uint64_t *passed)
{
    *limited = b == nullptr ? 0 : b->rl->limited();
    *passed = b == nullptr ? 0 : b->rl->passed();
}

extern "C" uint64_t st_bgio_compactions(const st_bgio *b, const char *cf)
{
    return b == nullptr ? 0 : b->log->count(cf);
}

extern "C" void st_bgio_log_start(st_bgio *b)
{
    if (b != nullptr)
        b->log->start();
}

extern "C" size_t st_bgio_log(const st_bgio *b, st_bgio_rec *out, size_t max)
{
    return b == nullptr ? 0 : b->log->copy(out, max);
}
