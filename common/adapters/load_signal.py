"""What the database shows of live traffic, for the background jobs' pacing
(common/pacing.py).

One statement over `pg_locks`, which every login may read (pg_stat_activity hides other
logins' state unless the reader has pg_read_all_stats, which Cloud SQL's users lack):
- every session inside a transaction holds the lock on its own virtual transaction id,
  so counting those counts the sessions in the database right now: the live rate times
  how long each stays (Little's law), which rises when requests slow down as well as
  when more come;
- a lock not granted is a session waiting for another's lock.
The reading session itself is left out. It costs a few hundred microseconds and is read
at most a few times a second, between batches: the same query in Google Cloud as here,
no metrics API, nothing each request must do.
"""

from __future__ import annotations

import logging

from common.adapters.postgres import Statements
from common.errors import LedgerError
from common.pacing import Load

log = logging.getLogger("ledger.pacing")

LOAD_SQL = """
SELECT count(*) FILTER (WHERE locktype = 'virtualxid' AND granted),
       count(*) FILTER (WHERE NOT granted)
  FROM pg_locks
 WHERE pid <> pg_backend_pid()
"""


class LoadSignal(Statements):
    def __call__(self) -> Load | None:
        """The load now; None when it could not be read (the pacer then rests as long
        as it may: a database too busy to answer this is not one to add work to)."""
        try:
            in_transaction, waiting = self._run(LOAD_SQL)[0]
        except LedgerError as error:
            log.warning("the database's load could not be read", extra={"error": str(error)})
            return None
        return Load(int(in_transaction), int(waiting))
