/* st_schema: the store's side of the schema registry (requests): the
 * AppendBatch.schemas of a request as st_schema items, and the SchemaList
 * reply (st_db_schema_list). */
#ifndef ST_SCHEMA_H
#define ST_SCHEMA_H

#include <stddef.h>

#include "st_db.h"
#include "walhook.pb-c.h"

/* a->schemas as an array (*out, free() it; NULL when there are none).
 * WH_ERR (err names the field) when one is malformed. */
int st_schema_from_batch(const Walhook__AppendBatch *a, st_schema **out, char *err, size_t errlen);
/* Answers SchemaList: rep gets the tenant's versions; *mem what the reply
 * points at (st_schema_reply_free after the reply is sent). */
void st_schema_list(st_db *db, const Walhook__SchemaList *sl, Walhook__Reply *rep, void **mem);
void st_schema_reply_free(void *mem);

#endif
