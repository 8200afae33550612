#!/usr/bin/env bash
# test_stream_resend with SUB_ABORT=1: X begins with a subtransaction whose
# rows of table u, u's first use, are streamed before it rolls back. The
# schema event of u's version is staged in that subtransaction and dropped
# with its rows, as the form sent whole never has it. Before, it was staged
# under X's top-level xid, survived the abort, and every row of the resent
# whole form moved by one seq.
SUB_ABORT=1 exec bash "$(dirname "$0")/test_stream_resend.sh"
