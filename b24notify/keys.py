"""Every Redis key b24notify uses, built in one place from typed parts.

Schema (``P`` is the key prefix, default ``b24n``; a *member* of the task due set is
``"{portal}|{task_id}"``, of the delivery due set ``"{alert_key}|{channel}"``):

| key | type | holds | written by | TTL |
| --- | --- | --- | --- | --- |
| ``P:portal:{portal}:connected_at`` | string | ISO time the portal was first connected (or the state last started over): results created before it are a silent baseline | first *serving* web/worker start, with the epoch (``state_epoch.lua``); reset to now when the state was lost; app install (SET NX) | none; deleted by ``ONAPPUNINSTALL`` |
| ``P:state:epoch`` | hash | ``id`` (random), ``since``, ``by``: the epoch of the state; missing or changed = Redis lost the state (``state_epoch.py``) | first serving process | none |
| ``P:state:lost`` | hash | the last state loss: ``at``, ``reason``, ``epoch``, ``previous``, ``by`` (for ``/readyz`` and ``doctor``) | the process that found it (``state_epoch.lua``) | 7 days |
| ``P:due:{set}`` | zset | member → when it is due (unix s) | web (``note_event``), jobs (retry), reaper | none |
| ``P:lease:{set}`` | zset | member → lease deadline; a leased member is being worked on | dispatcher (``claim``) | none |
| ``P:token:{set}`` | hash | member → fencing token of its current lease | dispatcher | none |
| ``P:pending:{set}`` | hash | member → when an event arrived while it was leased: one more run after this one | web, ``schedule`` | none |
| ``P:since:{set}`` | hash | member → its first waiting event, to cap the trailing debounce | web, ``schedule``; cleared by ``claim`` | none |
| ``P:window:{set}`` | zset | member → end of its open debounce window (a read was made or asked for less than the debounce ago: an event before the end gets one more read at the end) | web, ``schedule`` (removes closed windows on every event) | the last window's end + 1 s |
| ``P:wake`` | list | a few tokens: a run became due earlier than anything else, dispatchers blocked on BLPOP wake up | ``schedule``; dispatchers pop | 60 s; at most 4 entries |
| ``P:attempts:{set}`` | hash | member → failures in a row | jobs | none |
| ``P:strikes:{set}`` | hash | member → runs in a row that failed for a cause of its own (an error while syncing it, an unreadable answer, a lease that expired); from 2 it is claimed alone | sync job, reaper (``reap``); cleared by ``release`` (done) | none |
| ``P:parked:{set}`` | hash | member → why it was parked (JSON: reason, cause, at, strikes): it failed ``B24NOTIFY_TASK_MAX_ATTEMPTS`` times and left the due set | sync job (``release``); cleared when it next runs cleanly | none |
| ``P:drop`` | set | task members whose state must be forgotten (ONTASKDELETE) | web; upkeep removes members neither due nor leased | none |
| ``P:results:{portal}:{task}`` | hash | result id → StoredResult JSON, plus ``_known`` (last commit, unix s) | sync job commit (Lua); upkeep after an uninstall | ``B24NOTIFY_RESULTS_KEEP_DAYS`` + 1 h, renewed by every commit |
| ``P:gone:{portal}:{task}`` | hash | the results hash of a task whose state was dropped (error ``0``, ONTASKDELETE), so that a task that comes back (access restored, restored from the bin) resumes from it | sync job | 30 days (as long as sent deliveries) |
| ``P:delivery:{delivery_id}`` | hash | notice JSON (alerts, target, language; a record from before issue 9 holds one alert), channel, status, attempts, last_error; ``failing_since`` and ``early_failures`` (the retry schedule's state, ``workers/retries.py``); ``in_flight`` (a chat send whose outcome is unknown). Once sent it is rewritten to status, sent_at, portal, channel, created_at, attempts (``mark_sent``: no notice) | sync commit, delivery jobs | 30 days from its creation; 30 days again once sent or dead |
| ``P:deadletter`` | zset | delivery id → when it was dead-lettered | delivery jobs; ``deadletter purge``; upkeep drops entries older than their record (30 days) | none (entries 30 days) |
| ``P:cache:task:{portal}:{task}`` | string | TaskInfo JSON | sync job | ``B24NOTIFY_TASK_CACHE_SECONDS`` |
| ``P:cache:person:{portal}:{user}`` | string | JSON: name, e-mail, active (``user.get``) | sync job | ``B24NOTIFY_USER_CACHE_SECONDS`` |
| ``P:prefs:{portal}`` | hash | user id → JSON preferences (mute, kinds, channels, language) | ``b24notify prefs set`` | none; deleted by ``ONAPPUNINSTALL`` |
| ``P:intake:rate`` | string | ``window start|events|events before`` of the current second and the one before, to tell a burst (``schedule``) | web | 10 s |
| ``P:metrics`` | hash | ``name{labels}`` → counter | everyone; a portal's fields are removed after its uninstall (upkeep) | none |
| ``P:series:{portal}:{series}:{hour}`` | hash | minute of the hour (0–59) → count, for the console's charts: ``rest`` (requests to the portal), ``sent``, ``failed`` (alerts: retry + dead); ``{hour}`` is unix time // 3600 (``series.py``) | workers, with the counter they mirror (``Counters.inc``) | 25 h from the hour's start: at most 26 hashes of 60 fields per portal and series |
| ``P:budget:{portal}`` | string | the fleet's GCRA clock (theoretical arrival time) for the portal's REST bucket | REST client (Lua) | a minute past idle |
| ``P:operating:{portal}:reset_at`` | hash | method → last ``operating_reset_at`` seen | REST client | none; deleted by ``ONAPPUNINSTALL`` |
| ``P:operating:{portal}:pause:{method}`` | string | the method is paused until this unix time | REST client | until then |
| ``P:watch:{portal}:next`` | zset | task id → its next reconciliation poll | sync job, sweep, ``poll_watch`` | none |
| ``P:watch:{portal}:active`` | zset | task id → when it was last active (event, change) | web, sync job, sweep | none |
| ``P:watch:{portal}:status`` | hash | task id → `status|changedDate` the sweep saw (status 5 = completed) | sweep; removed with the task's watch entry (idle, completed, deleted) | none |
| ``P:watch:{portal}:synced`` | zset | task id → when a sync last read it (the sweep skips tasks read after their CHANGED_DATE) | sync job; removed with the task's watch entry | none |
| ``P:budget:{portal}:reconcile`` | string | GCRA clock of reconciliation's slice of the budget | reconciler | a minute past idle |
| ``P:sweep:{portal}:last`` / ``:cursor`` / ``:lock`` | string | start of the last complete sweep / the unfinished one (since, next page) / who sweeps now | reconciler | cursor 1 h, lock 30 s |
| ``P:app:{portal}`` | hash | an app install (app mode): member_id, client_endpoint, application_token, access/refresh token, expires, user_id | web (``ONAPPINSTALL``), token refresh (workers) | none; deleted by ``ONAPPUNINSTALL`` |
| ``P:app:installed`` | set | portals where the app is installed | web | none |
| ``P:app:removed`` | hash | uninstalled portal → ``uninstalled_at|scan cursor``: its results hashes and metrics are still to be removed | web (``ONAPPUNINSTALL``); upkeep deletes it when done | none (minutes) |
| ``P:upkeep:lock`` | string | which worker runs the minute's upkeep (``workers/upkeep.py``) | workers | 60 s |
| ``P:app:{portal}:refreshing`` | string | who is refreshing the portal's OAuth tokens now (the lock) | workers | 15 s |
| ``P:portal:{portal}:halted`` | string | why calls to the portal stopped (a permanent error) | jobs | none |
| ``P:trace:{portal}`` | stream | the trace: one entry a step of a task (event, scheduled, sync, delivery, replay; ``trace.py``), never a secret or a message body | web (``schedule``), sync and delivery jobs, sweep, ``sync --task``, dead-letter replay | capped at ``TRACE_MAXLEN`` entries (``XADD MAXLEN ~``); 7 days after its last entry |
| ``P:console:login:failures:{address}`` | string | wrong console passwords from one client address (``console/ratelimit.py``) | web | 15 min from the first |
| ``P:console:login:blocked:{address}`` | string | that address may not log in (10 wrong passwords in 15 min) | web | 15 min |
| ``P:trigger:{set}`` | hash | member → why it was last asked for (``event``, ``sweep``, ``manual``) and not yet run: the next sync's trace trigger (none: a reconciliation poll) | ``schedule``; the sync job takes it (and puts it back for a run that will be retried) | 1 day after its last write |

``{set}`` is ``tasks`` or ``deliveries``.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKS = "tasks"
DELIVERIES = "deliveries"


@dataclass(frozen=True)
class Keys:
    prefix: str = "b24n"

    def connected_at(self, portal: str) -> str:
        return f"{self.prefix}:portal:{portal}:connected_at"

    def halted(self, portal: str) -> str:
        return f"{self.prefix}:portal:{portal}:halted"

    def due(self, name: str) -> str:
        return f"{self.prefix}:due:{name}"

    def lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    def token(self, name: str) -> str:
        return f"{self.prefix}:token:{name}"

    def attempts(self, name: str) -> str:
        return f"{self.prefix}:attempts:{name}"

    def strikes(self, name: str) -> str:
        return f"{self.prefix}:strikes:{name}"

    def parked(self, name: str) -> str:
        return f"{self.prefix}:parked:{name}"

    def window(self, name: str) -> str:
        return f"{self.prefix}:window:{name}"

    def wake(self) -> str:
        return f"{self.prefix}:wake"

    def token_counter(self) -> str:
        return f"{self.prefix}:lease_seq"

    def drop(self) -> str:
        return f"{self.prefix}:drop"

    def results(self, portal: str, task_id: int) -> str:
        return f"{self.prefix}:results:{portal}:{task_id}"

    def gone_results(self, portal: str, task_id: int) -> str:
        return f"{self.prefix}:gone:{portal}:{task_id}"

    def delivery(self, delivery_id: str) -> str:
        return f"{self.prefix}:delivery:{delivery_id}"

    def delivery_prefix(self) -> str:
        return f"{self.prefix}:delivery:"

    def deadletter(self) -> str:
        return f"{self.prefix}:deadletter"

    def task_cache(self, portal: str, task_id: int) -> str:
        return f"{self.prefix}:cache:task:{portal}:{task_id}"

    def user_cache(self, portal: str, user_id: int) -> str:
        return f"{self.prefix}:cache:person:{portal}:{user_id}"  # a JSON UserInfo (issue 9; was a name)

    def prefs(self, portal: str) -> str:
        return f"{self.prefix}:prefs:{portal}"  # hash: user id -> JSON Prefs (b24notify prefs set)

    def budget(self, portal: str) -> str:
        return f"{self.prefix}:budget:{portal}"

    def operating(self, portal: str) -> str:
        return f"{self.prefix}:operating:{portal}"

    def watch_next(self, portal: str) -> str:
        return f"{self.prefix}:watch:{portal}:next"

    def watch_active(self, portal: str) -> str:
        return f"{self.prefix}:watch:{portal}:active"

    def watch_status(self, portal: str) -> str:
        return f"{self.prefix}:watch:{portal}:status"

    def watch_synced(self, portal: str) -> str:
        return f"{self.prefix}:watch:{portal}:synced"

    def reconcile_budget(self, portal: str) -> str:
        return f"{self.prefix}:budget:{portal}:reconcile"

    def sweep_last(self, portal: str) -> str:
        return f"{self.prefix}:sweep:{portal}:last"

    def sweep_cursor(self, portal: str) -> str:
        return f"{self.prefix}:sweep:{portal}:cursor"

    def sweep_lock(self, portal: str) -> str:
        return f"{self.prefix}:sweep:{portal}:lock"

    def app_install(self, portal: str) -> str:
        return f"{self.prefix}:app:{portal}"

    def app_installs(self) -> str:
        return f"{self.prefix}:app:installed"

    def oauth_lock(self, portal: str) -> str:
        return f"{self.prefix}:app:{portal}:refreshing"

    def intake_rate(self) -> str:
        return f"{self.prefix}:intake:rate"

    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    def series(self, portal: str, name: str, hour: int) -> str:
        return f"{self.prefix}:series:{portal}:{name}:{hour}"

    def epoch(self) -> str:
        return f"{self.prefix}:state:epoch"

    def state_lost(self) -> str:
        return f"{self.prefix}:state:lost"

    def removed_portals(self) -> str:
        return f"{self.prefix}:app:removed"

    def upkeep_lock(self) -> str:
        return f"{self.prefix}:upkeep:lock"

    def trace(self, portal: str) -> str:
        return f"{self.prefix}:trace:{portal}"  # stream: the portal's trace (trace.py)

    def trace_prefix(self) -> str:
        return f"{self.prefix}:trace:"

    def trigger(self, name: str) -> str:
        return f"{self.prefix}:trigger:{name}"  # hash: member -> why its next run was asked for

    def portal_scan_pattern(self, portal: str) -> str:
        """A SCAN pattern that matches every per-task key of the portal (and more: check each key
        against ``task_state_heads``)."""
        return f"{self.prefix}:*:{glob_escape(portal)}:*"

    def task_state_heads(self, portal: str) -> tuple[str, ...]:
        """What the portal's per-task state keys start with; a task id follows."""
        return f"{self.prefix}:results:{portal}:", f"{self.prefix}:gone:{portal}:"


def task_member(portal: str, task_id: int) -> str:
    return f"{portal}|{task_id}"


def split_task_member(member: str) -> tuple[str, int]:
    portal, _, task = member.rpartition("|")
    return portal, int(task)


def glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def as_text(value: bytes | str) -> str:
    """Redis answers bytes (RQ needs a bytes connection, and we share it)."""
    return value.decode() if isinstance(value, bytes) else value
