-- v3 -> v4 (compatible with v1+): Index of the pending transactions of the inbox
-- PendingTxns reads these, in arrival order, at every start; done
-- transactions stay in the inbox for a while (database/txn.go), and the
-- index holds none of them.
CREATE INDEX txn_inbox_pending_idx ON txn_inbox (seq) WHERE done=false;
