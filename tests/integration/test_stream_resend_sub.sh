#!/usr/bin/env bash
# test_stream_resend with DDL_MSG=1 and SUB_ABORT=1: t's version is known
# before X, and X begins with
# - a transactional walhook.ddl message (another slot's DDL capture;
#   source.ddl is off here): no event, and its seq kept in the whole form;
#   in the streamed form the ingestor stages an empty placeholder that the
#   store numbers at the commit and never stores;
# - a subtransaction whose rows of table u, u's first use, are streamed
#   before it rolls back: u's schema event is staged in that subtransaction
#   and dropped with its rows, as the whole form never has it.
# Before, the store numbered the staged events 0..n-1 without the message,
# and the schema event, staged under X's top-level xid, survived the
# rollback: either way every row of the resent whole form moved by one seq.
DDL_MSG=1 SUB_ABORT=1 exec bash "$(dirname "$0")/test_stream_resend.sh"
