/* st_gcfilter: see st_gcfilter.h. */
#include "st_gcfilter.h"

#include <rocksdb/compaction_filter.h>
#include <rocksdb/options.h>

#include <cstdio>
#include <memory>

namespace
{

class GcFilter : public rocksdb::CompactionFilter
{
  public:
    GcFilter(const st_gcfilter_ops *ops, void *snap, bool flush)
        : ops_(ops), snap_(snap), flush_(flush)
    {
    }
    ~GcFilter() override
    {
        if (snap_ != nullptr)
            ops_->snap_free(snap_);
    }
    /* A key dropped at flush goes without a deletion marker: RocksDB turns
     * a kRemove into a tombstone in every output but the last level (an
     * older version might lie below), so a flush whose events had all been
     * delivered still wrote a level-0 file of their keys (about 1,900
     * tombstones per 4 MiB memtable of the wide backlog), and each such
     * file cost a compaction later. kRemoveAndSkipUntil the key's
     * successor removes exactly this key and leaves nothing, and so
     * would bring back an older copy of the key in a table file: the
     * caller's drop returns 2 when there may be one (an event written
     * again after a restart of the store), and such a key keeps its
     * marker. */
    Decision FilterV2(int, const rocksdb::Slice &key, ValueType type, const rocksdb::Slice &,
                      std::string *, std::string *skip_until) const override
    {
        int d;
        if (type != ValueType::kValue || snap_ == nullptr ||
            (d = ops_->drop(snap_, key.data(), key.size())) == 0)
            return Decision::kKeep;
        if (!flush_ || d != 1)
            return Decision::kRemove;
        skip_until->assign(key.data(), key.size());
        skip_until->push_back('\0'); /* the least key after this one */
        return Decision::kRemoveAndSkipUntil;
    }
    const char *Name() const override
    {
        return "walhook-gc";
    }

  private:
    const st_gcfilter_ops *ops_;
    void *snap_;
    bool flush_;
};

class GcFactory : public rocksdb::CompactionFilterFactory
{
  public:
    GcFactory(const st_gcfilter_ops *ops, void *state) : ops_(ops), state_(state) {}
    bool ShouldFilterTableFileCreation(rocksdb::TableFileCreationReason r) const override
    {
        return r == rocksdb::TableFileCreationReason::kFlush ||
               r == rocksdb::TableFileCreationReason::kCompaction;
    }
    std::unique_ptr<rocksdb::CompactionFilter>
    CreateCompactionFilter(const rocksdb::CompactionFilter::Context &ctx) override
    {
        int flush = ctx.reason == rocksdb::TableFileCreationReason::kFlush;
        return std::unique_ptr<rocksdb::CompactionFilter>(
            new GcFilter(ops_, ops_->snap(state_, flush), flush != 0));
    }
    const char *Name() const override
    {
        return "walhook-gc-factory";
    }

  private:
    const st_gcfilter_ops *ops_;
    void *state_;
};

} // namespace

/* Two settings written through the C API read back through the C++ view. */
extern "C" int st_rocks_layout_ok(rocksdb_options_t *o)
{
    size_t wb = o->rep.write_buffer_size;
    int levels = o->rep.num_levels;
    rocksdb_options_set_write_buffer_size(o, wb + 4096);
    rocksdb_options_set_num_levels(o, levels + 1);
    bool ok = o->rep.write_buffer_size == wb + 4096 && o->rep.num_levels == levels + 1;
    rocksdb_options_set_write_buffer_size(o, wb);
    rocksdb_options_set_num_levels(o, levels);
    return ok;
}

extern "C" int st_gcfilter_install(rocksdb_options_t *o, void *state, const st_gcfilter_ops *ops,
                                   char *err, size_t errlen)
{
    if (!st_rocks_layout_ok(o)) {
        if (err != nullptr && errlen > 0)
            std::snprintf(err, errlen,
                          "rocksdb_options_t is not the layout st_gcfilter was "
                          "built for: events are filtered at compaction only");
        return -1;
    }
    o->rep.compaction_filter_factory.reset(new GcFactory(ops, state));
    return 0;
}
