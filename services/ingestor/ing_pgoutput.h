/* ing_pgoutput: a pure parser of pgoutput messages (the payload of
 * XLogData): protocol version 1, and version 2's streamed transactions
 * (Stream Start 'S', Stop 'E', Commit 'c', Abort 'A'; inside a stream block
 * R/Y/I/U/D/T/M carry the (sub)transaction's xid, in msg->xid); plus the
 * relation cache (latest Relation per OID).
 *
 * Every read is bounds-checked: malformed input returns WH_ERR with a message
 * naming the message type and the byte offset; it never crashes. Parsed
 * strings and tuple values point into the caller's buffer, which must stay
 * valid while the ing_msg is used. Relation messages are copied into the
 * cache (owned by the parser). */
#ifndef ING_PGOUTPUT_H
#define ING_PGOUTPUT_H

#include <stddef.h>
#include <stdint.h>

/* One column value of a TupleData. kind: 'n' NULL, 'u' unchanged TOAST,
 * 't' text, 'b' binary. */
typedef struct ing_col {
    char kind;
    uint32_t len;
    const char *data;
} ing_col;

typedef struct ing_tuple {
    int ncols;
    ing_col *cols; /* owned by the parser, reused */
} ing_tuple;

/* ing_attr.flags: ING_ATTR_IDENT comes from the Relation message (the
 * column is part of the replica identity; the parser keeps no other bit of
 * it); ING_ATTR_PK is set by ing_relation_set_pk. */
#define ING_ATTR_IDENT 1
#define ING_ATTR_PK 2

struct ing_vtype; /* ing_values.h */

typedef struct ing_attr {
    uint8_t flags; /* ING_ATTR_* */
    char *name;
    uint32_t type_oid;
    int32_t typmod;
    const struct ing_vtype *vtype; /* how a type that is not built in renders
                                      (ing_relation_set_vtype; owned by
                                      ing_types); NULL: by type_oid */
    char *member;                  /* the name as a JSON object member, "name": (escaped;
                                      NULL in a relation not made by the parser) */
    size_t member_len;             /* its length, the ':' included */
} ing_attr;

typedef struct ing_relation {
    uint32_t oid;
    char *nspname;
    char *relname;
    char replident; /* 'd', 'n', 'f', 'i' */
    int natts;
    ing_attr *atts;
    int key_pk; /* 1: the envelope key is the ING_ATTR_PK columns (a REPLICA
                   IDENTITY FULL table whose primary key was found); 0: the
                   ING_ATTR_IDENT columns */
    /* its schema version (ing_schema_version): the fingerprint, and as
       16 lowercase hex digits (version_hex[0] == 0: none, events carry no
       schema_version); version_done: its schema event was decided (emitted
       or not needed) on this Relation message. A new Relation message of the
       OID starts with none. */
    uint64_t version;
    char version_hex[17];
    int version_done;
    uint32_t conn; /* the parser's connection number when it was parsed */
} ing_relation;

typedef struct ing_msg {
    char type; /* 'B','C','R','Y','O','I','U','D','T','M'; streaming: 'S','E','c','A' */
    /* Begin */
    uint64_t final_lsn;
    int64_t commit_ts_us; /* Begin/Commit/Stream Commit: microseconds since the Unix epoch */
    uint32_t xid;         /* Begin, Stream Start/Commit/Abort: the transaction; a message
                             inside a stream block: its (sub)transaction */
    uint32_t subxid;      /* Stream Abort: the aborted (sub)transaction (== xid: all of it) */
    /* Commit */
    uint8_t flags; /* Commit flags; Message: 1 = transactional;
                      Truncate: 1 cascade, 2 restart identity;
                      Stream Start: 1 = the transaction's first segment */
    uint64_t commit_lsn;
    uint64_t end_lsn;
    /* Relation (points into the cache), Insert/Update/Delete */
    const ing_relation *rel;
    uint32_t rel_oid;
    char old_kind;    /* 0, 'K' or 'O' */
    ing_tuple oldtup; /* valid when old_kind != 0 */
    int has_new;
    ing_tuple newtup;
    /* Truncate */
    int nrels;
    const uint32_t *rel_oids; /* owned by the parser */
    /* Origin / Message / Type */
    uint64_t lsn;
    const char *name;    /* origin name, message prefix, type name */
    const char *nspname; /* type namespace */
    const uint8_t *content;
    uint32_t content_len;
} ing_msg;

typedef struct ing_parser ing_parser;

int ing_parser_new(ing_parser **out, char *err, size_t errlen);
void ing_parser_free(ing_parser *p);

/* Parses one pgoutput message buf[0..len). On 'R' the relation is stored in
 * the cache (replacing an older one) and msg->rel points at it. For
 * I/U/D msg->rel is the cached relation of rel_oid, or NULL when none was
 * seen (the caller decides; it is not a parse error). */
int ing_parse(ing_parser *p, const uint8_t *buf, size_t len, ing_msg *msg, char *err,
              size_t errlen);

/* 1 between a Stream Start and its Stream Stop. */
int ing_parser_in_stream(const ing_parser *p);
/* Forgets an open stream block (a new connection starts outside one). */
void ing_parser_stream_reset(ing_parser *p);
/* A new replication connection: ing_parser_stream_reset, and the cached
 * relations become unknown until PostgreSQL sends their Relation message
 * again on it (a change of such a relation gets msg->rel NULL, and
 * ing_relation_get/mut return NULL): a relation is never decoded with
 * what another connection said of it. */
void ing_parser_new_connection(ing_parser *p);
/* Clears version_done of every cached relation (ing_schema_forget_xid). */
void ing_parser_versions_reset(ing_parser *p);
/* The cached relation of an OID (sent on this connection), or NULL. */
const ing_relation *ing_relation_get(const ing_parser *p, uint32_t oid);
/* The same, to set what the parser does not fill (ing_schema). */
ing_relation *ing_relation_mut(ing_parser *p, uint32_t oid);
size_t ing_relation_count(const ing_parser *p);
/* Walks the cached relations of this connection: *pos starts at 0; NULL
 * at the end. The cache must not change during the walk. */
const ing_relation *ing_relation_next(const ing_parser *p, size_t *pos);

/* Marks the cached relation oid's columns named in names[0..n) ING_ATTR_PK
 * and sets key_pk. WH_ERR (err says why, the relation left with key_pk 0
 * and no ING_ATTR_PK column) when the relation is not cached, n < 1, or a
 * name is not one of its columns. */
int ing_relation_set_pk(ing_parser *p, uint32_t oid, const char *const *names, int n, char *err,
                        size_t errlen);

/* Sets column att's render descriptor in the cached relation oid (NULL: by
 * its type OID). WH_ERR when the relation is not cached or has no such
 * column. A new Relation message of the OID starts with none. */
int ing_relation_set_vtype(ing_parser *p, uint32_t oid, int att, const struct ing_vtype *vt);

/* PostgreSQL epoch (2000-01-01) offset to the Unix epoch, microseconds. */
#define ING_PG_EPOCH_OFFSET_US INT64_C(946684800000000)

#endif
