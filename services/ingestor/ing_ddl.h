/* ing_ddl: the DDL capture in the source database (source.ddl, a runtime
 * setting of the daemon and of a tenant's source: docs/CONTROL.md).
 *
 * The capture is a function, public.walhook_ddl_capture(), and two event
 * triggers, walhook_ddl_end (ddl_command_end) and walhook_ddl_drop
 * (sql_drop), that emit each DDL command as a transactional logical message
 * with prefix ING_SCHEMA_DDL_PREFIX (ing_event_ddl renders it). They are per
 * database: every slot of the database decodes their messages, and an
 * ingestor whose source.ddl is off consumes them without an event.
 *
 * Who uses them: when walhook creates the triggers it marks walhook_ddl_end
 * with a comment, ING_DDL_MARK followed by the slots that use the capture
 * ("walhook ddl capture; slots: a,b"). ing_ddl_setup runs at each
 * connection of the ingestor, in one transaction under an advisory lock
 * (ING_DDL_LOCK) so that two ingestors of one database never lose each
 * other's change:
 *  - on: creates what is missing (as ing_schema did since issue 9:
 *    idempotent, the function replaced only when its source differs) and
 *    adds the slot to the mark of triggers walhook created; triggers without
 *    the mark (made by an operator's script) are used as they are;
 *  - off: removes the slot from the mark; when no slot is left (slots that
 *    no longer exist are dropped from the list as well), drops both
 *    triggers and the function (IF EXISTS: idempotent). Triggers without
 *    the mark, or whose mark does not list the slot, are left alone.
 * A comment on or a drop of an event trigger fires no event trigger, so
 * none of this is ever a ddl event. Editing the mark and dropping need a
 * superuser (the owner of event triggers); without one, "on" with the
 * triggers present uses them unregistered, and "off" leaves them with a
 * warning (ddl events stop either way). */
#ifndef ING_DDL_H
#define ING_DDL_H

#include <libpq-fe.h>
#include <stddef.h>

#include "wh_buf.h"

#define ING_DDL_MARK "walhook ddl capture; slots: "
#define ING_DDL_LOCK 0x77686464 /* pg_advisory_xact_lock key, "whdd" */

/* Installs (on) or releases (off) the capture for slot over conn (a
 * replication connection accepts plain SQL). On: WH_ERR with an error
 * naming the missing privilege (superuser, or owner of the existing
 * function) or the failure. Off: always WH_OK; a failure is a warning. */
int ing_ddl_setup(PGconn *conn, const char *slot, int on, char *err, size_t errlen);

/* The users' list after adding (add = 1) or removing slot: the names of
 * list ("a,b", the mark's tail) that are valid slot names, listed in live
 * (comma-separated, the database's existing slots; NULL keeps every name)
 * and not slot, once each, in their order, then slot when adding. out is
 * reset first; WH_OK, or WH_ERR when out of memory. */
int ing_ddl_users(const char *list, const char *slot, int add, const char *live, wh_buf *out);

#endif
