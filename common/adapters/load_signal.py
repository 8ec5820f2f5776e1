"""What the database shows of live traffic, for the background jobs' pacing
(common/pacing.py).

One statement over `pg_locks` joined to `pg_stat_activity`, both of which every login
may read: the jobs' logins are granted nothing more (pg_stat_activity alone would hide
other logins' state and wait events without pg_read_all_stats). Counted:
- the sessions inside a transaction: each holds the lock on its own virtual
  transaction id, so counting those counts the sessions in the database right now, the
  live rate times how long each stays (Little's law), which rises when requests slow
  down as well as when more come;
- the locks not granted: a session waiting for another's lock.
Left out: every session of the reading job's own login (the job itself: its other
connections, lanes or snapshot; in Google Cloud each kind of function has its login),
and the database's own processes (autovacuum and the like, which have no login).
The reading's own round trip is timed too: a request's round trip slows down the same
way when the database's host is short of CPU, which no count of sessions shows.
Read at most a few times a second, between batches: the same statement in Google Cloud
as on the local stack, and nothing any request must do.
"""

from __future__ import annotations

import logging
import time

from common.adapters.postgres import Statements
from common.errors import LedgerError
from common.pacing import Load

log = logging.getLogger("ledger.pacing")

LOAD_SQL = """
SELECT count(*) FILTER (WHERE l.locktype = 'virtualxid' AND l.granted),
       count(*) FILTER (WHERE NOT l.granted)
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE a.usesysid IS NOT NULL AND a.usename <> current_user
"""


class LoadSignal(Statements):
    def __call__(self) -> Load | None:
        """The load now; None when it could not be read (the pacer then rests as long
        as it may: a database too busy to answer this is not one to add work to)."""
        started = time.perf_counter()
        try:
            in_transaction, waiting = self._run(LOAD_SQL)[0]
        except LedgerError as error:
            log.warning("the database's load could not be read", extra={"error": str(error)})
            return None
        return Load(int(in_transaction), int(waiting), probe_s=time.perf_counter() - started)
