#!/usr/bin/env bash
# test_stream_resend with DDL_MSG=1: X begins with a transactional
# walhook.ddl message (another slot's DDL capture; source.ddl is off here),
# which is no event and takes its seq in the whole form. In the streamed
# form the ingestor stages an empty placeholder that the store numbers at
# the commit and never stores: the same seqs both ways. Before, the store
# numbered the staged events 0..n-1 and every row of the resent whole form
# moved by one seq.
DDL_MSG=1 exec bash "$(dirname "$0")/test_stream_resend.sh"
