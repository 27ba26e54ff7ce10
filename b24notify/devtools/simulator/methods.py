"""The REST methods the simulated portal answers, over one ``Portal``.

Each method takes the request's params (JSON types, or strings from a form/query) and returns an
``Answer`` or raises ``RestError``. Methods decide which event the portal announces: results have
no events of their own, and pinning a comment through REST fires none (docs/protocol.md §2, §3).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from b24notify.devtools.simulator import events
from b24notify.devtools.simulator.auth import Caller
from b24notify.devtools.simulator.errors import RestError
from b24notify.devtools.simulator.params import (
    Params,
    as_int,
    as_list,
    as_mapping,
    flag,
    int_field,
    param,
    required_int,
    type_error,
)
from b24notify.devtools.simulator.portal import (
    KNOWN_STATUSES,
    PERSONAL_NOTIFICATION,
    SYSTEM_NOTIFICATION,
    CommentNotFound,
    Portal,
    ResultAlreadyExists,
    Task,
    TaskNotFound,
    User,
    iso,
    utc_now,
)
from b24notify.devtools.simulator.taskfilter import task_filters

PAGE_SIZE = 50  # "The page size is always static — 50 records" (§4)
ADMIN_USER_ID = 1  # the portal's first user, the one who created it


def page_offset(start: int) -> int:
    """Where a page starts for ``start``: list methods turn it into a page number,
    ``intval(start / 50) + 1`` (RestManager::initialize, IRestService::getNavData), so a start
    between two page boundaries reads from the lower one; ``start=-1`` reads the first page."""
    return (start // PAGE_SIZE) * PAGE_SIZE if start > 0 else 0
DIALOG_ID = re.compile(r"^(chat\d+|sg\d+|\d+)$")

# An event and the user whose action fired it (app handlers get that user's token, §1).
Emit = Callable[[events.PortalEvent, int], None]


@dataclass(frozen=True)
class Answer:
    result: Any
    total: int | None = None
    next: int | None = None


Handler = Callable[[Params, Caller], Answer]


# -- views ------------------------------------------------------------------------------------------

# select name -> response key (§4 table)
_TASK_SELECT = {
    "ID": "id", "TITLE": "title", "RESPONSIBLE_ID": "responsibleId", "CREATED_BY": "createdBy",
    "GROUP_ID": "groupId", "STATUS": "status", "CHANGED_DATE": "changedDate",
    "CREATED_DATE": "createdDate", "CLOSED_DATE": "closedDate", "CLOSED_BY": "closedBy", "CHAT_ID": "chatId",
    "ACCOMPLICES": "accomplices", "AUDITORS": "auditors",
}
# Response keys that come along with a selected one: the people's details.
_TASK_COMPANIONS = {
    "createdBy": "creator", "responsibleId": "responsible",
    "accomplices": "accomplicesData", "auditors": "auditorsData",
}

# ATTACH_OVERSIZE above this many characters of JSON (EN im-notify-system-add.md: "30 KB").
MAX_ATTACH_CHARS = 30_000


def _user_brief(user: User | None, user_id: int) -> dict[str, str]:
    name = f"{user.name} {user.last_name}".strip() if user else ""
    return {"id": str(user_id), "name": name, "link": f"/company/personal/user/{user_id}/",
            "icon": "", "workPosition": ""}


def _people_data(users: dict[int, User], user_ids: tuple[int, ...]) -> dict[str, Any] | list[Any]:
    """``accomplicesData``/``auditorsData``: an object keyed by user id, ``[]`` when there is nobody
    (a PHP empty array; EN tasks-task-list.md shows ``"accomplicesData": []``)."""
    if not user_ids:
        return []
    return {str(u): _user_brief(users.get(u), u) for u in user_ids}


def _user_ids(value: Any, name: str) -> list[int]:
    """``ACCOMPLICES``/``AUDITORS`` of tasks.task.add/update: an array of user ids (from a form,
    ``fields[AUDITORS][]=504`` or ``fields[AUDITORS][0]=504``). A single id counts as one."""
    ids = [as_int(v) for v in as_list(value)]
    if any(i is None for i in ids):
        raise type_error(value, name)
    return [i for i in ids if i is not None and i > 0]


def user_view(user: User) -> dict[str, Any]:
    return {"ID": str(user.id), "ACTIVE": user.active, "NAME": user.name, "LAST_NAME": user.last_name,
            "SECOND_NAME": "", "EMAIL": user.email, "WORK_POSITION": ""}


class PortalMethods:
    """The method table. Each method acts as the ``Caller`` it is given: the webhook's user or the
    access token's user. ``extra`` adds methods kept elsewhere (``event.*``, ``app_methods.py``)."""

    def __init__(self, portal: Portal, emit: Emit, *, extra: Iterable[tuple[str, Handler]] = ()) -> None:
        self.portal = portal
        self._emit = emit
        self._table: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler) for name, handler in (
                ("tasks.task.add", self.task_add),
                ("tasks.task.update", self.task_update),
                ("tasks.task.complete", self.task_complete),
                ("tasks.task.renew", self.task_renew),
                ("tasks.task.delete", self.task_delete),
                ("tasks.task.get", self.task_get),
                ("tasks.task.list", self.task_list),
                ("task.commentitem.add", self.comment_add),
                ("task.commentitem.update", self.comment_update),
                ("task.commentitem.delete", self.comment_delete),
                ("tasks.task.result.addFromComment", self.result_add_from_comment),
                ("tasks.task.result.deleteFromComment", self.result_delete_from_comment),
                ("tasks.task.result.list", self.result_list),
                ("user.get", self.user_get),
                ("profile", self.profile),
                ("server.time", self.server_time),
                ("im.message.add", self.message_add),
                ("im.notify.system.add", self.notify_system_add),
                ("im.notify.personal.add", self.notify_personal_add),
                ("im.dialog.messages.get", self.dialog_messages_get),
                *extra,
            )
        }

    def canonical(self, method: str) -> str:
        """The method's documented spelling (names are case-insensitive); unknown names lower-cased."""
        name = method.lower().removesuffix(".json")
        known = self._table.get(name)
        return known[0] if known else name

    def call(self, method: str, params: Params, caller: Caller) -> Answer:
        known = self._table.get(method.lower())
        if known is None:
            raise RestError("ERROR_METHOD_NOT_FOUND")
        return known[1](params, caller)

    def task_id_of(self, params: Params) -> int | None:
        """The task a call is about, for fault rules with ``task_id``."""
        for name in ("taskId", "TASK_ID", "0"):
            task_id = as_int(param(params, name))
            if task_id is not None:
                return task_id
        comment_id = as_int(param(params, "commentId"))
        comment = self.portal.comments.get(comment_id) if comment_id is not None else None
        return comment.task_id if comment else None

    # -- tasks ------------------------------------------------------------------------------------

    def _task(self, params: Params) -> Task:
        """The task named by ``taskId`` for the tasks.task.* controllers: "0" when it is missing."""
        task_id = required_int(params, "taskId")
        try:
            return self.portal.task(task_id)
        except TaskNotFound:
            raise RestError("0", "Access denied.") from None

    def task_view(self, task: Task, select: list[str] | None = None, *, result_info: bool = False) -> dict[str, Any]:
        """A task as tasks.task.get/list show it: camelCase keys, values as strings (§4)."""
        users = self.portal.users
        full: dict[str, Any] = {
            "id": str(task.id),
            "title": task.title,
            "responsibleId": str(task.responsible_id),
            "createdBy": str(task.created_by),
            "groupId": str(task.group_id),
            "status": str(task.status),
            "changedDate": iso(task.changed_date),
            "createdDate": iso(task.created_date),
            "closedBy": str(task.closed_by),  # "0" while open (EN tasks/fields.md)
            "closedDate": iso(task.closed_date) if task.closed_date else None,
            "chatId": str(task.chat_id),
            "auditors": [str(u) for u in task.auditors],
            "accomplices": [str(u) for u in task.accomplices],
            "creator": _user_brief(users.get(task.created_by), task.created_by),
            "responsible": _user_brief(users.get(task.responsible_id), task.responsible_id),
            "accomplicesData": _people_data(users, task.accomplices),
            "auditorsData": _people_data(users, task.auditors),
        }
        wanted = [s.upper() for s in select or []]
        if wanted and "*" not in wanted:
            keys = {"id"} | {_TASK_SELECT[s] for s in wanted if s in _TASK_SELECT}
            keys |= {_TASK_COMPANIONS[k] for k in keys if k in _TASK_COMPANIONS}
            full = {key: value for key, value in full.items() if key in keys}
        if result_info:
            results = self.portal.task_results(task.id)
            full["taskRequireResult"] = "N"
            full["taskHasResult"] = "Y" if results else "N"
            # Only the latest result (MAX(ID)) decides "has open result" (§3 "Cheap change detection").
            full["taskHasOpenResult"] = "Y" if results and results[0].is_open else "N"
        return full

    def task_add(self, params: Params, caller: Caller) -> Answer:
        fields = as_mapping(param(params, "fields"))
        title = str(param(fields, "TITLE") or "").strip()
        if not title:
            raise RestError("ERROR_CORE", "Task title is not specified")
        status = int_field(fields, "STATUS", 2)
        if status not in KNOWN_STATUSES:
            raise RestError("ERROR_CORE", f"Unknown task status {status}")
        task = self.portal.add_task(
            title,
            responsible_id=int_field(fields, "RESPONSIBLE_ID", caller.user_id),
            created_by=int_field(fields, "CREATED_BY", caller.user_id),
            group_id=int_field(fields, "GROUP_ID", 0),
            status=status,
            accomplices=_user_ids(param(fields, "ACCOMPLICES"), "ACCOMPLICES"),
            auditors=_user_ids(param(fields, "AUDITORS"), "AUDITORS"),
            by_user=caller.user_id,
        )
        self._emit(events.task_added(task.id), caller.user_id)
        return Answer({"task": self.task_view(task)})

    def task_update(self, params: Params, caller: Caller) -> Answer:
        task = self._task(params)
        fields = as_mapping(param(params, "fields"))
        status = int_field(fields, "STATUS", task.status)
        if status not in KNOWN_STATUSES:
            raise RestError("ERROR_CORE", f"Unknown task status {status}")
        title = param(fields, "TITLE")
        accomplices, auditors = param(fields, "ACCOMPLICES"), param(fields, "AUDITORS")
        self.portal.update_task(
            task.id,
            title=None if title is None else str(title),
            status=status,
            responsible_id=int_field(fields, "RESPONSIBLE_ID", task.responsible_id),
            created_by=int_field(fields, "CREATED_BY", task.created_by),
            group_id=int_field(fields, "GROUP_ID", task.group_id),
            # Named: the new list replaces the old one (an empty value empties it); not named: kept.
            accomplices=None if accomplices is None else _user_ids(accomplices, "ACCOMPLICES"),
            auditors=None if auditors is None else _user_ids(auditors, "AUDITORS"),
            by_user=caller.user_id,
        )
        return self._updated(task, caller)

    def task_complete(self, params: Params, caller: Caller) -> Answer:
        task = self._task(params)
        self.portal.complete_task(task.id, by_user=caller.user_id)
        return self._updated(task, caller)

    def task_renew(self, params: Params, caller: Caller) -> Answer:
        task = self._task(params)
        self.portal.renew_task(task.id, by_user=caller.user_id)
        return self._updated(task, caller)

    def _updated(self, task: Task, caller: Caller) -> Answer:
        # OnTaskUpdate fires for every update and status change; results were closed in the same
        # hit before the event leaves (§2 "Closing results").
        self._emit(events.task_updated(task.id), caller.user_id)
        return Answer({"task": self.task_view(task)})

    def task_delete(self, params: Params, caller: Caller) -> Answer:
        task = self._task(params)
        self.portal.delete_task(task.id)
        self._emit(events.task_deleted(task.id), caller.user_id)
        return Answer({"task": True})

    def task_get(self, params: Params, caller: Caller) -> Answer:
        raw_id = param(params, "taskId")
        if raw_id is None or raw_id == "":
            raise RestError("100", "CTaskItem All parameters in the constructor must have real class type "
                                   "(internal error)")
        task_id = as_int(raw_id)
        if task_id is None or task_id <= 0:
            raise RestError("0", "wrong task id")
        task = self.portal.tasks.get(task_id)
        if task is None:
            return Answer([])  # a missing or hidden task is an empty array, not an error (§4)
        extra = as_mapping(param(params, "params"))
        return Answer({"task": self.task_view(task, as_list(param(params, "select")),
                                              result_info="WITH_RESULT_INFO" in extra)})

    def task_list(self, params: Params, caller: Caller) -> Answer:
        filters = task_filters(as_mapping(param(params, "filter")))
        tasks = [t for t in self.portal.tasks.values() if all(f(t) for f in filters)]
        order = {str(k).upper(): str(v).lower() for k, v in as_mapping(param(params, "order")).items()}
        tasks.sort(key=lambda t: t.id, reverse=order.get("ID") == "desc")
        select = as_list(param(params, "select"))
        extra = as_mapping(param(params, "params"))
        start = as_int(param(params, "start")) or 0
        offset = page_offset(start)
        page = tasks[offset:offset + PAGE_SIZE]
        views = [self.task_view(t, select, result_info="WITH_RESULT_INFO" in extra) for t in page]
        if start == -1:
            # start=-1 turns the count off, and with it both total and next (§4; RestManager's
            # getNavigationData returns nothing): a client pages by the last ID instead.
            return Answer({"tasks": views})
        more = offset + len(page) < len(tasks)
        return Answer({"tasks": views}, total=len(tasks), next=offset + len(page) if more else None)

    # -- comments ---------------------------------------------------------------------------------

    def _comment_task(self, params: Params) -> Task:
        task_id = as_int(param(params, "TASKID", param(params, "0")))
        task = self.portal.tasks.get(task_id) if task_id is not None else None
        if task is None:
            raise RestError("ERROR_CORE", "Task not found or not accessible")
        return task

    def comment_add(self, params: Params, caller: Caller) -> Answer:
        task = self._comment_task(params)
        fields = as_mapping(param(params, "FIELDS", param(params, "1")))
        message = str(param(fields, "POST_MESSAGE") or "")
        if not message.strip():
            raise RestError("ERROR_CORE", "Comment text is empty")
        # Disk attachments arrive as "n1055" (a file id with the disk prefix).
        files = [int(str(f).lstrip("n")) for f in as_list(param(fields, "UF_FORUM_MESSAGE_DOC"))
                 if str(f).lstrip("n").isdigit()]
        comment, _ = self.portal.add_comment(
            task.id,
            author_id=int_field(fields, "AUTHOR_ID", caller.user_id),
            message=message,
            as_result=flag(param(fields, "AS_RESULT")),  # simulator extension: the UI's "result" box
            files=files,
        )
        self._emit(events.comment_added(task.id, comment.id,
                                        message_id=comment.message_id if self.portal.new_card else None),
                   caller.user_id)
        return Answer(comment.id)

    def _comment_of(self, params: Params) -> tuple[Task, int]:
        task = self._comment_task(params)
        comment_id = as_int(param(params, "ITEMID", param(params, "1")))
        if comment_id is None or comment_id not in self.portal.comments:
            raise RestError("ERROR_CORE", "Comment not found")
        return task, comment_id

    def comment_update(self, params: Params, caller: Caller) -> Answer:
        task, comment_id = self._comment_of(params)
        fields = as_mapping(param(params, "FIELDS", param(params, "2")))
        message = str(param(fields, "POST_MESSAGE") or "")
        if not message.strip():
            raise RestError("ERROR_CORE", "Comment text is empty")
        try:
            self.portal.update_comment(task.id, comment_id, message)
        except CommentNotFound:
            raise RestError("ERROR_CORE", "Comment not found") from None
        if not self.portal.new_card:  # the new card fires no update/delete events (§2)
            self._emit(events.comment_updated(task.id, comment_id), caller.user_id)
        return Answer(True)

    def comment_delete(self, params: Params, caller: Caller) -> Answer:
        task, comment_id = self._comment_of(params)
        try:
            self.portal.delete_comment(task.id, comment_id)
        except CommentNotFound:
            raise RestError("ERROR_CORE", "Comment not found") from None
        if not self.portal.new_card:
            self._emit(events.comment_deleted(task.id, comment_id), caller.user_id)
        return Answer(True)

    # -- results (no events: docs/protocol.md §2 "A result can appear with no event at all") ----------

    def result_add_from_comment(self, params: Params, caller: Caller) -> Answer:
        comment_id = required_int(params, "commentId")
        try:
            result = self.portal.pin_comment(comment_id, by_user=caller.user_id)
        except CommentNotFound:
            raise RestError("0", "Comment not found.") from None
        except ResultAlreadyExists:
            raise RestError("0", "Result already exists.") from None
        return Answer(result.to_rest(files_as_null=True))

    def result_delete_from_comment(self, params: Params, caller: Caller) -> Answer:
        comment_id = required_int(params, "commentId")
        if comment_id not in self.portal.comments:
            raise RestError("0", "Comment not found.")
        self.portal.unpin_comment(comment_id)
        return Answer(None)

    def result_list(self, params: Params, caller: Caller) -> Answer:
        # The doc's type-error text really names {commentId} here (§3).
        task_id = required_int(params, "taskId", error_name="commentId")
        if task_id == 0:
            raise RestError("0", "Task not found.")
        try:
            rows = self.portal.task_results(task_id)
        except TaskNotFound:
            raise RestError("0", "Access denied.") from None
        return Answer([row.to_rest() for row in rows])

    # -- users, chat, notifications ---------------------------------------------------------------

    def user_get(self, params: Params, caller: Caller) -> Answer:
        # No ACTIVE condition unless asked for: a dismissed user comes back too, with "ACTIVE": false.
        # EN user-get.md: "ACTIVE — when set to true excludes dismissed users"; the rest module's
        # userGet adds no ACTIVE filter of its own.
        conditions = dict(as_mapping(param(params, "FILTER")))
        for key in ("ID", "ACTIVE", "EMAIL"):
            if param(params, key) is not None:
                conditions[key] = param(params, key)
        users = sorted(self.portal.users.values(), key=lambda u: u.id)
        ids = {as_int(v) for v in as_list(param(conditions, "ID"))}
        if ids:
            users = [u for u in users if u.id in ids]
        if param(conditions, "ACTIVE") is not None:
            users = [u for u in users if u.active == flag(param(conditions, "ACTIVE"))]
        if param(conditions, "EMAIL"):
            users = [u for u in users if u.email == str(param(conditions, "EMAIL"))]
        offset = page_offset(as_int(param(params, "start")) or 0)
        page = users[offset:offset + PAGE_SIZE]
        more = offset + len(page) < len(users)
        return Answer([user_view(u) for u in page], total=len(users), next=offset + len(page) if more else None)

    def profile(self, params: Params, caller: Caller) -> Answer:
        """The caller's own basic profile, no scope needed (EN ``common/users/profile.md``)."""
        user = self.portal.users.get(caller.user_id)
        return Answer({
            "ID": str(caller.user_id),
            "ADMIN": caller.user_id == ADMIN_USER_ID,
            "NAME": user.name if user else "",
            "LAST_NAME": user.last_name if user else "",
            "PERSONAL_GENDER": "",
            "TIME_ZONE": "",
        })

    def server_time(self, params: Params, caller: Caller) -> Answer:
        """``date('c')`` of the portal (EN ``common/system/server-time.md``)."""
        return Answer(iso(utc_now()))

    def message_add(self, params: Params, caller: Caller) -> Answer:
        dialog_id = str(param(params, "DIALOG_ID") or "").strip()
        if not DIALOG_ID.match(dialog_id):
            raise RestError("CHAT_ID", "Chat ID can't be empty or is not valid")
        message = str(param(params, "MESSAGE") or "").strip()
        attach = param(params, "ATTACH")
        if not message and not attach:
            raise RestError("MESSAGE_EMPTY", "Message can't be empty")
        posted = self.portal.post_message(
            dialog_id, message,
            author_id=caller.user_id,
            attach=attach,
            keyboard=param(params, "KEYBOARD"),
            url_preview=str(param(params, "URL_PREVIEW", "Y")).upper() != "N",
            system=flag(param(params, "SYSTEM")),
        )
        return Answer(posted.id)

    def dialog_messages_get(self, params: Params, caller: Caller) -> Answer:
        """The dialog's latest messages, newest first (EN ``im-dialog-messages-get.md``): ``LIMIT``
        (default 20, at most 50), ``LAST_ID`` for older ones. Any dialog is readable here."""
        dialog_id = str(param(params, "DIALOG_ID") or "").strip()
        if not dialog_id:
            raise RestError("DIALOG_ID_EMPTY", "Dialog ID can't be empty")
        limit = max(1, min(50, as_int(param(params, "LIMIT")) or 20))
        last_id = as_int(param(params, "LAST_ID"))
        found = [m for m in reversed(self.portal.messages)
                 if m.dialog_id == dialog_id and (last_id is None or m.id < last_id)][:limit]
        return Answer({
            "messages": [{"id": m.id, "chat_id": m.dialog_id, "author_id": m.author_id, "date": iso(m.created_at),
                          "text": m.message, "params": None} for m in found],
            "users": [], "files": [],
        })

    def notify_system_add(self, params: Params, caller: Caller) -> Answer:
        return self._notify(params, caller, SYSTEM_NOTIFICATION)

    def notify_personal_add(self, params: Params, caller: Caller) -> Answer:
        return self._notify(params, caller, PERSONAL_NOTIFICATION)

    def _notify(self, params: Params, caller: Caller, kind: str) -> Answer:
        """``im.notify.system.add`` / ``im.notify.personal.add`` (EN ``chats/notifications/``;
        ``CIMRestService::notifyAdd``), checks in the source's order."""
        to = param(params, "TO")  # the source's older name, which wins when both are sent
        user_id = as_int(param(params, "USER_ID") if to is None else to)
        if user_id is None or user_id <= 0:
            raise RestError("USER_ID_EMPTY", "User ID can't be empty")
        message = str(param(params, "MESSAGE") or "").strip()
        if not message:
            raise RestError("MESSAGE_EMPTY", "Message can't be empty")
        tag = str(param(params, "TAG") or "")
        sub_tag = str(param(params, "SUB_TAG") or "")
        client_id, namespace = self._notify_app(params, caller, tagged=bool(tag or sub_tag))
        attach = _notify_attach(param(params, "ATTACH"))
        if user_id not in self.portal.users:
            # Undocumented for an unknown user; the pages say only "If the notification was not
            # created, it may return false" — so false, in a 200 (docs/protocol.md §9).
            return Answer(False)
        notification = self.portal.notify(
            user_id, message,
            author_id=caller.user_id,
            message_out=str(param(params, "MESSAGE_OUT") or "").strip(),
            tag=tag,
            sub_tag=sub_tag,
            client_id=client_id,
            namespace=namespace,
            kind=kind,
            attach=attach,
        )
        return Answer(notification.id)

    @staticmethod
    def _notify_app(params: Params, caller: Caller, *, tagged: bool) -> tuple[str, str]:
        """The app a notification belongs to: ``(client id, tag namespace)``. An OAuth call is its
        application's (``CLIENT_ID`` is ignored then); a webhook names one with ``CLIENT_ID`` and
        must when it sends ``TAG`` or ``SUB_TAG`` ("Pass it with CLIENT_ID when calling via
        webhook", EN im-notify-system-add.md). The page gives no error for leaving it out; the one
        used is what im.notify.delete documents for the same case (EN im-notify-delete.md:
        ``ACCESS_DENIED`` "Access denied! Client ID not specified", the source's AccessException,
        HTTP 403). A webhook's namespace is "custom" + CLIENT_ID, as the im module's bot methods
        and notifyDelete make it."""
        if caller.oauth:
            return caller.client_id, caller.client_id
        client_id = str(param(params, "CLIENT_ID") or "").strip()
        if tagged and not client_id:
            raise RestError("ACCESS_DENIED", "Access denied! Client ID not specified", 403)
        return client_id, f"custom{client_id}" if client_id else ""


def _notify_attach(raw: Any) -> Any:
    """``ATTACH``: an object or array, or the same as a JSON string (``ATTACH_ERROR`` otherwise),
    at most ``MAX_ATTACH_CHARS`` of JSON (``ATTACH_OVERSIZE``)."""
    if raw is None or raw == "":
        return None
    attach = raw
    if isinstance(raw, str):
        try:
            attach = json.loads(raw)
        except ValueError:
            raise RestError("ATTACH_ERROR", "Incorrect attach params") from None
    if not isinstance(attach, dict | list) or not attach:
        raise RestError("ATTACH_ERROR", "Incorrect attach params")
    if len(json.dumps(attach, ensure_ascii=False)) > MAX_ATTACH_CHARS:
        raise RestError("ATTACH_OVERSIZE", "You have exceeded the maximum allowable size of attach")
    return attach
