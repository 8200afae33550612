# walhook top-level Makefile.
#   make            build the daemons, the walhook command and test tools into bin/
#   make test       build and run every test (unit + integration); what CI runs
#   make unit       unit tests only (cmocka)
#   make bench      benchmark against pg_recvlogical (BENCH_SCALE=0.1: quick)
#   make bench-latency  commit_ts -> arrival latency under pgbench -R
#   make bench-stages   each stage alone (decode+render, store IPC, dispatcher)
#   make bench-tenants  two tenants on one store (isolation) and Append vs db_bench
#   make bench-dispatch dispatcher CPU/event native vs Debezium + filter, PSS with 100 targets
#   make bench-envelope hot-path bench (pgbench backlog) native vs Debezium + filter, four daemons
#   make bench-snapshot initial snapshot of a 1M-row orders table vs PostgreSQL's own COPY
#   make demo       the README's demo
#   make deps       install the Debian packages (as root)
#   make asan       build with AddressSanitizer + UBSan into build-asan/
#   make fuzz       build libFuzzer targets (clang) and run each briefly
#   make format     clang-format the tree

.DEFAULT_GOAL := all
BUILD ?= build
BIN   ?= bin
CC    ?= cc
OPT   ?= -O2 -g
SAN   ?=
CFLAGS_BASE = -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
              -Icommon -I$(BUILD)/gen -I/usr/include/postgresql $(SAN)
CFLAGS += $(OPT) $(CFLAGS_BASE)
LDFLAGS += $(SAN) -Wl,--as-needed
LIBS_COMMON = -lprotobuf-c -lnng -lpq -lconfig -ljansson -lpthread

PROTO_C = $(BUILD)/gen/walhook.pb-c.c
PROTO_H = $(BUILD)/gen/walhook.pb-c.h

COMMON_SRC = $(wildcard common/*.c)
COMMON_OBJ = $(COMMON_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/walhook.pb-c.o $(BUILD)/gen/wh_build_info.o

# walhook_build_info{version,revision}: VERSION, and the git revision at build
# time (WALHOOK_REVISION when there is no git checkout, e.g. in a docker
# build; else "unknown"). The file is rewritten only when the text changes.
WH_VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
WH_REVISION := $(or $(WALHOOK_REVISION),$(shell git rev-parse --short=12 HEAD 2>/dev/null),unknown)
$(BUILD)/gen/wh_build_info.c: FORCE | $(BUILD)
	@printf 'const char wh_build_version[] = "%s";\nconst char wh_build_revision[] = "%s";\n' \
	  '$(WH_VERSION)' '$(WH_REVISION)' >$@.tmp; \
	if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/gen/wh_build_info.o: $(BUILD)/gen/wh_build_info.c
	$(CC) $(OPT) $(SAN) -c $< -o $@
FORCE:

# Each daemon: every .c in its directory; main.c holds main(). A .cc is C++
# only where a library's C++ symbol is defined (services/store/st_crc32c.cc).
define daemon_objs
$(patsubst %.c,$(BUILD)/%.o,$(wildcard services/$(1)/*.c)) $(patsubst %.cc,$(BUILD)/%.o,$(wildcard services/$(1)/*.cc))
endef
# Library objects of a service (everything but main.c), for unit tests.
define lib_objs
$(patsubst %.c,$(BUILD)/%.o,$(filter-out services/$(1)/main.c,$(wildcard services/$(1)/*.c))) $(patsubst %.cc,$(BUILD)/%.o,$(wildcard services/$(1)/*.cc))
endef

DAEMONS = $(BIN)/walhook-ingestor $(BIN)/walhook-store $(BIN)/walhook-dispatcher $(BIN)/walhook-admin
TOOLS   = $(BIN)/walhook $(BIN)/walhook-receiver
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BIN)/tests/%)

all: $(DAEMONS) $(TOOLS) $(UNIT_BIN) $(BIN)/tests/wh_loadgen $(BIN)/tests/wh_check \
     $(BIN)/tests/wh_storeload \
     $(BIN)/tests/wh_statectl $(BIN)/tests/wh_render $(BIN)/tests/wh_stagebench \
     $(BIN)/tests/wh_dspbench $(BIN)/tests/wh_pglat $(BIN)/tests/wh_synclat $(BIN)/tests/wh_pss \
     $(BIN)/tests/wh_syncgate.so

$(PROTO_C) $(PROTO_H): proto/walhook.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen proto/walhook.proto

$(BUILD)/gen/walhook.pb-c.o: $(PROTO_C)
	$(CC) $(OPT) -I$(BUILD)/gen $(SAN) -c $< -o $@

$(BUILD)/%.o: %.c $(PROTO_H) $(wildcard common/*.h) | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

CXX ?= c++
$(BUILD)/%.o: %.cc $(wildcard services/*/*.h) | $(BUILD)
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -std=gnu++17 -Wall -Wextra -Werror -fno-exceptions -Icommon $(SAN) -MMD -MP -c $< -o $@

$(BUILD):
	@mkdir -p $(BUILD)/gen

$(BUILD)/libwhcommon.a: $(COMMON_OBJ)
	ar rcs $@ $^

$(BIN)/walhook-ingestor: $(call daemon_objs,ingestor) $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_COMMON)

# RocksDB is linked statically into the daemon: only the code it uses is
# mapped, and the shared library's relocations are not paid for (about 3 MiB
# less resident). Its dependencies come with librocksdb-dev.
ROCKSDB_STATIC = -Wl,-Bstatic -lrocksdb -Wl,-Bdynamic -lsnappy -lz -lbz2 -llz4 -lzstd -lgflags \
                 -lstdc++ -lm -ldl
$(BIN)/walhook-store: $(call daemon_objs,store) $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(ROCKSDB_STATIC) $(LIBS_COMMON)

$(BIN)/walhook-dispatcher: $(call daemon_objs,dispatcher) $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ -lcurl -lcrypto $(LIBS_COMMON)

# docs/openapi.json is embedded in the admin (served at /v1/openapi.json).
$(BUILD)/gen/adm_openapi.c: docs/openapi.json | $(BUILD)
	{ echo '#include <stddef.h>'; echo 'const char adm_openapi_json[] = {'; \
	  od -An -v -tx1 $< | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0x00};'; \
	  echo "const size_t adm_openapi_json_len = $$(wc -c <$<);"; } >$@
$(BUILD)/gen/adm_openapi.o: $(BUILD)/gen/adm_openapi.c
	$(CC) $(OPT) $(SAN) -c $< -o $@
ADMIN_LIBS = -lmicrohttpd -ljansson

$(BIN)/walhook-admin: $(call daemon_objs,admin) $(BUILD)/gen/adm_openapi.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ $(ADMIN_LIBS) $(LIBS_COMMON)

# the walhook command reads the admin's token file with adm_auth (linked, not copied)
$(BIN)/walhook: $(patsubst %.c,$(BUILD)/%.o,$(wildcard tools/walhook/*.c)) $(BUILD)/services/admin/adm_auth.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ -lcurl -ljansson $(LIBS_COMMON)

$(BIN)/walhook-receiver: $(BUILD)/tools/receiver.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -o $@ $^ -lmicrohttpd $(LIBS_COMMON)

$(BIN)/tests/wh_loadgen: $(BUILD)/tests/lib/wh_loadgen.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_COMMON)

$(BIN)/tests/wh_pglat: $(BUILD)/tests/lib/wh_pglat.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_COMMON)

$(BIN)/tests/wh_synclat: $(BUILD)/tests/lib/wh_synclat.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_COMMON)

# an LD_PRELOAD library for tests (never in a daemon), built without the
# sanitizers: it is preloaded into the store of bin/, not of build-asan/
$(BIN)/tests/wh_syncgate.so: tests/lib/wh_syncgate.c
	@mkdir -p $(BIN)/tests
	$(CC) $(OPT) -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -fPIC -shared -o $@ $< -ldl

$(BIN)/tests/wh_pss: $(BUILD)/tests/lib/wh_pss.o
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^

$(BIN)/tests/wh_storeload: $(BUILD)/tests/lib/wh_storeload.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_COMMON)

$(BIN)/tests/wh_check: $(BUILD)/tests/lib/wh_check.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_COMMON)

# stage benchmark (make bench-stages): the ingestor's decode + render
$(BIN)/tests/wh_stagebench: $(BUILD)/tests/lib/wh_stagebench.o $(call lib_objs,ingestor) $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_COMMON)

$(BIN)/tests/wh_statectl: $(BUILD)/tests/lib/wh_statectl.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_COMMON)

# renders a request with the dispatcher's envelope and signing modules
$(BIN)/tests/wh_render: $(BUILD)/tests/lib/wh_render.o $(call lib_objs,dispatcher) $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^ -lcurl -lcrypto $(LIBS_COMMON)

# the dispatcher's per-event work alone (filter + envelope), for callgrind
$(BIN)/tests/wh_dspbench: $(BUILD)/tests/lib/wh_dspbench.o $(call lib_objs,dispatcher) $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(CC) $(LDFLAGS) -o $@ $^ -lcurl -lcrypto $(LIBS_COMMON)

# Unit tests link the library objects of the service named in their file name
# (test_ingestor_*.c -> services/ingestor/*.o but main.o), plus common.
TEST_LINK = $(CC) $(LDFLAGS) -o $@ $^
$(BIN)/tests/test_common_%: $(BUILD)/tests/unit/test_common_%.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(TEST_LINK) -lcmocka $(LIBS_COMMON)
$(BIN)/tests/test_ingestor_%: $(BUILD)/tests/unit/test_ingestor_%.o $(call lib_objs,ingestor) $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(TEST_LINK) -lcmocka $(LIBS_COMMON)
$(BIN)/tests/test_store_%: $(BUILD)/tests/unit/test_store_%.o $(call lib_objs,store) $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(TEST_LINK) -lcmocka -lrocksdb -lstdc++ $(LIBS_COMMON)
# it drives st_walfs's files through RocksDB's C++ FileSystem
$(BIN)/tests/test_store_walsync: $(BUILD)/tests/unit/walfs_drive.o
$(BIN)/tests/test_dispatcher_%: $(BUILD)/tests/unit/test_dispatcher_%.o $(call lib_objs,dispatcher) $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(TEST_LINK) -lcmocka -lcurl -lcrypto $(LIBS_COMMON)
$(BIN)/tests/test_admin_%: $(BUILD)/tests/unit/test_admin_%.o $(call lib_objs,admin) $(BUILD)/gen/adm_openapi.o $(BUILD)/libwhcommon.a
	@mkdir -p $(BIN)/tests
	$(TEST_LINK) -lcmocka $(ADMIN_LIBS) $(LIBS_COMMON)

deps:
	scripts/install-deps.sh

unit: all
	tests/run.sh --unit

test: all
	tests/run.sh

bench: all
	bench/run.sh

bench-latency: all
	bench/latency.sh

bench-tenants: all
	bench/tenants.sh

bench-stages: all
	bench/stages.sh

bench-dispatch: all
	bench/dispatch.sh

bench-envelope: all
	bench/envelope.sh

bench-snapshot: all
	bench/snapshot.sh

bench-startup: all
	bench/startup.sh

demo:
	scripts/demo.sh

asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/bin OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"

fuzz:
	tests/fuzz/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.cc' '*.h' | grep -v '^tests/unit/data/')

clean:
	rm -rf build build-asan bin

.PHONY: all deps unit test bench bench-latency bench-stages bench-tenants bench-dispatch bench-envelope bench-snapshot bench-startup demo asan fuzz format clean FORCE
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
.SECONDARY:
