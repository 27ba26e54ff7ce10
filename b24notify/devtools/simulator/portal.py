"""The simulated portal's data: users, tasks, comments, task results, chat messages, notifications.

Pure Python, no HTTP and no events: REST methods (``methods.py``) call this model and decide what
the portal would announce. The result rules follow the tasks module source (docs/protocol.md §3 "When
results close or reopen"):

- a task update that leaves the task in status 4 or 5 closes every open result;
- nothing ever reopens a result; renewing a task leaves its results closed;
- a result created while the task is in status 4 or 5 is created closed;
- a comment with an *open* result cannot be pinned again, one whose result is closed can: that
  makes a new result row (new id, same comment);
- unpinning removes the comment's result rows whatever their status.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PENDING = 2
AWAITING_CONTROL = 4
COMPLETED = 5
# CTasks::STATE_* (docs/protocol.md §3 "Task status constants"): 1 new … 7 declined.
KNOWN_STATUSES = frozenset(range(1, 8))
CLOSES_RESULTS = frozenset({AWAITING_CONTROL, COMPLETED})

RESULT_OPEN = 0
RESULT_CLOSED = 1


class TaskNotFound(LookupError):
    pass


class CommentNotFound(LookupError):
    pass


class UserNotFound(LookupError):
    pass


class ResultAlreadyExists(Exception):
    """The comment already carries an open result."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 with an offset, to the second, as the portal writes dates ("…T14:30:00+00:00")."""
    return moment.isoformat(timespec="seconds")


_BBCODE_STYLE = re.compile(r"\[(/?)([bius])\]", re.IGNORECASE)


def bbcode_to_html(text: str) -> str:
    """``formattedText``: the simple style tags become HTML, everything else is escaped."""
    return _BBCODE_STYLE.sub(lambda m: f"<{m[1]}{m[2].lower()}>", html.escape(text))


@dataclass
class User:
    id: int
    name: str
    last_name: str = ""
    email: str = ""
    active: bool = True


SEED_USERS: tuple[User, ...] = (
    User(1, "Admin", "", "admin@example.com"),
    User(503, "Anna", "Smith", "anna.smith@example.com"),
    User(504, "Boris", "Ivanov", "boris.ivanov@example.com"),
    User(505, "Chen", "Li", "chen.li@example.com"),
)


@dataclass
class Task:
    id: int
    title: str
    responsible_id: int
    created_by: int
    group_id: int
    status: int
    created_date: datetime
    changed_date: datetime
    closed_date: datetime | None
    chat_id: int
    accomplices: tuple[int, ...] = ()  # "participants"
    auditors: tuple[int, ...] = ()  # "observers"
    closed_by: int = 0  # who moved it to 4 or 5; 0 while it is open (EN tasks/fields.md "closedBy")


@dataclass
class Comment:
    id: int
    task_id: int
    author_id: int
    message: str
    created_at: datetime
    files: tuple[int, ...] = ()
    message_id: int = 0  # the chat message behind the comment in the new task card, else 0


@dataclass
class ResultRow:
    """One row of ``b_tasks_result``."""

    id: int
    task_id: int
    comment_id: int  # what REST reports: 0 for every result in the new task card (§3)
    source_comment_id: int  # the comment it was made from, kept even when the card hides it
    created_by: int
    created_at: datetime
    updated_at: datetime
    status: int
    text: str
    files: tuple[int, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status == RESULT_OPEN

    def to_rest(self, *, files_as_null: bool = False) -> dict[str, Any]:
        """The row as ``tasks.task.result.list`` shows it (ints as ints, unlike tasks.task.get)."""
        return {
            "id": self.id,
            "taskId": self.task_id,
            "commentId": self.comment_id,
            "createdBy": self.created_by,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "status": self.status,
            "text": self.text,
            "formattedText": bbcode_to_html(self.text),
            # addFromComment answers with files null; the list action turns it into [] (§3).
            "files": None if files_as_null else list(self.files),
        }


@dataclass
class ChatMessage:
    id: int
    dialog_id: str
    author_id: int
    message: str
    created_at: datetime
    attach: Any = None
    keyboard: Any = None
    url_preview: bool = True
    system: bool = False


SYSTEM_NOTIFICATION = "system"  # im.notify.system.add
PERSONAL_NOTIFICATION = "personal"  # im.notify.personal.add


def portal_tag(namespace: str, tag: str) -> str:
    """The ``NOTIFY_TAG`` the im module stores for an app's ``TAG``: ``MP|<md5(client id)[:5]>|TAG``
    (``CIMRestService::notifyAdd``). Tags of different apps never meet; within one app a tag is
    one slot for the whole portal, whoever the recipient."""
    if not tag:
        return ""
    return f"MP|{hashlib.md5(namespace.encode()).hexdigest()[:5]}|{tag}"


@dataclass
class Notification:
    id: int
    user_id: int
    author_id: int  # who sent it: the caller of the REST method
    message: str
    created_at: datetime
    message_out: str = ""
    tag: str = ""
    sub_tag: str = ""
    client_id: str = ""  # the app it came from: the OAuth client id, or a webhook's CLIENT_ID
    namespace: str = ""  # what the portal keys the app's tags by ("custom" + CLIENT_ID for a webhook)
    kind: str = SYSTEM_NOTIFICATION
    attach: Any = None
    replaced_by: int | None = None  # the later notification whose TAG removed this one

    @property
    def portal_tag(self) -> str:
        return portal_tag(self.namespace, self.tag)

    @property
    def removed(self) -> bool:
        return self.replaced_by is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "user_id": self.user_id, "author_id": self.author_id, "kind": self.kind,
            "message": self.message, "message_out": self.message_out, "tag": self.tag, "sub_tag": self.sub_tag,
            "client_id": self.client_id, "portal_tag": self.portal_tag, "attach": self.attach,
            "at": iso(self.created_at), "removed": self.removed, "replaced_by": self.replaced_by,
        }


@dataclass
class _Sequences:
    """Id ranges kept apart so a test that mixes up a task id and a comment id fails loudly."""

    task: Iterator[int] = field(default_factory=lambda: itertools.count(8001))
    comment: Iterator[int] = field(default_factory=lambda: itertools.count(3101))
    result: Iterator[int] = field(default_factory=lambda: itertools.count(21))
    chat: Iterator[int] = field(default_factory=lambda: itertools.count(7001))
    message: Iterator[int] = field(default_factory=lambda: itertools.count(50001))
    notification: Iterator[int] = field(default_factory=lambda: itertools.count(90001))


class Portal:
    def __init__(
        self,
        *,
        new_card: bool = False,
        users: Iterable[User] = SEED_USERS,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.new_card = new_card
        self._now = now
        self._ids = _Sequences()
        self.users: dict[int, User] = {u.id: User(u.id, u.name, u.last_name, u.email, u.active) for u in users}
        self.tasks: dict[int, Task] = {}
        self.comments: dict[int, Comment] = {}
        self.results: dict[int, ResultRow] = {}
        self.messages: list[ChatMessage] = []
        # Every notification ever added, oldest first; one a TAG removed stays here with replaced_by.
        self.notifications: list[Notification] = []

    def _stamp(self) -> datetime:
        # The portal stores dates to the second, so ">CHANGED_DATE" can miss a change made in the
        # same second as the last one seen; that is the real behaviour, keep it.
        return self._now().replace(microsecond=0)

    # -- users ------------------------------------------------------------------------------------

    def add_user(
        self, name: str, last_name: str = "", email: str = "", *, active: bool = True, user_id: int | None = None
    ) -> User:
        new_id = user_id if user_id is not None else max(self.users, default=0) + 1
        user = User(new_id, name, last_name, email, active)
        self.users[new_id] = user
        return user

    def update_user(
        self,
        user_id: int,
        *,
        name: str | None = None,
        last_name: str | None = None,
        email: str | None = None,
        active: bool | None = None,
    ) -> User:
        """Change what is given; ``active=False`` is a dismissed employee (user.get still lists them)."""
        user = self.users.get(user_id)
        if user is None:
            raise UserNotFound(user_id)
        if name is not None:
            user.name = name
        if last_name is not None:
            user.last_name = last_name
        if email is not None:
            user.email = email
        if active is not None:
            user.active = active
        return user

    # -- tasks ------------------------------------------------------------------------------------

    def task(self, task_id: int) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise TaskNotFound(task_id) from None

    def add_task(
        self,
        title: str,
        *,
        responsible_id: int,
        created_by: int,
        group_id: int = 0,
        status: int = PENDING,
        accomplices: Iterable[int] = (),
        auditors: Iterable[int] = (),
        by_user: int | None = None,
    ) -> Task:
        """``by_user``: who adds it (the caller), who closed it when it is born in status 4 or 5;
        the creator when not given."""
        now = self._stamp()
        closed = status in CLOSES_RESULTS
        task = Task(
            id=next(self._ids.task),
            title=title,
            responsible_id=responsible_id,
            created_by=created_by,
            group_id=group_id,
            status=status,
            created_date=now,
            changed_date=now,
            closed_date=now if closed else None,
            chat_id=next(self._ids.chat),
            accomplices=_people(accomplices),
            auditors=_people(auditors),
            closed_by=(created_by if by_user is None else by_user) if closed else 0,
        )
        self.tasks[task.id] = task
        return task

    def update_task(
        self,
        task_id: int,
        *,
        title: str | None = None,
        status: int | None = None,
        responsible_id: int | None = None,
        created_by: int | None = None,
        group_id: int | None = None,
        accomplices: Iterable[int] | None = None,
        auditors: Iterable[int] | None = None,
        by_user: int | None = None,
    ) -> Task:
        """Change what is given (``accomplices``/``auditors`` replace the lists). ``by_user`` is who
        makes the change (the caller; the responsible when not given): a status change to 4 or 5
        makes them ``closed_by`` and sets ``closed_date``, any other status change clears both
        (``CTasks::Update`` in the tasks module source, on a status change only)."""
        task = self.task(task_id)
        now = self._stamp()
        if title is not None:
            task.title = title
        if responsible_id is not None:
            task.responsible_id = responsible_id
        if created_by is not None:
            task.created_by = created_by
        if group_id is not None:
            task.group_id = group_id
        if accomplices is not None:
            task.accomplices = _people(accomplices)
        if auditors is not None:
            task.auditors = _people(auditors)
        if status is not None and status != task.status:
            task.status = status
            if status in CLOSES_RESULTS:
                task.closed_by = task.responsible_id if by_user is None else by_user
                task.closed_date = now
            else:
                task.closed_by = 0
                task.closed_date = None
        task.changed_date = now
        # Control\Task::update() → closeResult() runs on every update that leaves the task in 4 or 5.
        if task.status in CLOSES_RESULTS:
            self._close_results(task.id, now)
        return task

    def complete_task(self, task_id: int, *, by_user: int | None = None) -> Task:
        return self.update_task(task_id, status=COMPLETED, by_user=by_user)

    def renew_task(self, task_id: int, *, by_user: int | None = None) -> Task:
        return self.update_task(task_id, status=PENDING, by_user=by_user)

    def delete_task(self, task_id: int) -> Task:
        task = self.task(task_id)
        del self.tasks[task_id]
        self.comments = {cid: c for cid, c in self.comments.items() if c.task_id != task_id}
        self.results = {rid: r for rid, r in self.results.items() if r.task_id != task_id}
        return task

    # -- comments ---------------------------------------------------------------------------------

    def comment(self, comment_id: int, *, task_id: int | None = None) -> Comment:
        comment = self.comments.get(comment_id)
        if comment is None or (task_id is not None and comment.task_id != task_id):
            raise CommentNotFound(comment_id)
        return comment

    def add_comment(
        self, task_id: int, *, author_id: int, message: str, as_result: bool = False, files: Iterable[int] = ()
    ) -> tuple[Comment, ResultRow | None]:
        self.task(task_id)
        comment = Comment(
            id=next(self._ids.comment),
            task_id=task_id,
            author_id=author_id,
            message=message,
            created_at=self._stamp(),
            files=tuple(files),
            message_id=next(self._ids.message) if self.new_card else 0,
        )
        self.comments[comment.id] = comment
        result = self._create_result(comment, created_by=author_id) if as_result else None
        return comment, result

    def update_comment(self, task_id: int, comment_id: int, message: str) -> Comment:
        comment = self.comment(comment_id, task_id=task_id)
        comment.message = message
        now = self._stamp()
        for result in self._results_of_comment(comment_id):
            if result.is_open:
                result.text = message
                result.updated_at = now
        return comment

    def delete_comment(self, task_id: int, comment_id: int) -> Comment:
        comment = self.comment(comment_id, task_id=task_id)
        self.unpin_comment(comment_id)
        del self.comments[comment_id]
        return comment

    # -- results ----------------------------------------------------------------------------------

    def pin_comment(self, comment_id: int, *, by_user: int) -> ResultRow:
        """``tasks.task.result.addFromComment``: whoever pins becomes the author (§3)."""
        comment = self.comment(comment_id)
        if any(r.is_open for r in self._results_of_comment(comment_id)):
            raise ResultAlreadyExists(comment_id)
        return self._create_result(comment, created_by=by_user)

    def unpin_comment(self, comment_id: int) -> list[ResultRow]:
        """``tasks.task.result.deleteFromComment``: the newer source deletes whatever the status."""
        removed = self._results_of_comment(comment_id)
        for result in removed:
            del self.results[result.id]
        return removed

    def task_results(self, task_id: int) -> list[ResultRow]:
        """Every result of the task, newest first (``ORDER BY ID DESC``, no paging)."""
        self.task(task_id)
        rows = [r for r in self.results.values() if r.task_id == task_id]
        return sorted(rows, key=lambda r: r.id, reverse=True)

    def _results_of_comment(self, comment_id: int) -> list[ResultRow]:
        return [r for r in self.results.values() if r.source_comment_id == comment_id]

    def _create_result(self, comment: Comment, *, created_by: int) -> ResultRow:
        task = self.task(comment.task_id)
        now = self._stamp()
        result = ResultRow(
            id=next(self._ids.result),
            task_id=task.id,
            comment_id=0 if self.new_card else comment.id,
            source_comment_id=comment.id,
            created_by=created_by,
            created_at=now,
            updated_at=now,
            status=RESULT_CLOSED if task.status in CLOSES_RESULTS else RESULT_OPEN,
            text=comment.message,
            files=comment.files,
        )
        self.results[result.id] = result
        return result

    def _close_results(self, task_id: int, now: datetime) -> None:
        for result in self.results.values():
            if result.task_id == task_id and result.is_open:
                result.status = RESULT_CLOSED
                result.updated_at = now

    # -- chat and notifications -------------------------------------------------------------------

    def post_message(
        self,
        dialog_id: str,
        message: str,
        *,
        author_id: int,
        attach: Any = None,
        keyboard: Any = None,
        url_preview: bool = True,
        system: bool = False,
    ) -> ChatMessage:
        posted = ChatMessage(
            id=next(self._ids.message),
            dialog_id=dialog_id,
            author_id=author_id,
            message=message,
            created_at=self._stamp(),
            attach=attach,
            keyboard=keyboard,
            url_preview=url_preview,
            system=system,
        )
        self.messages.append(posted)
        return posted

    def notify(
        self,
        user_id: int,
        message: str,
        *,
        author_id: int,
        message_out: str = "",
        tag: str = "",
        sub_tag: str = "",
        client_id: str = "",
        namespace: str | None = None,
        kind: str = SYSTEM_NOTIFICATION,
        attach: Any = None,
    ) -> Notification:
        """Add a notification. A ``tag`` already used by the same app (``namespace``; ``client_id``
        when not given) removes every earlier notification with it, whoever they were for:
        ``CIMNotify::DeleteByTag`` deletes by ``NOTIFY_TAG`` alone (docs/protocol.md §9)."""
        notification = Notification(
            id=next(self._ids.notification),
            user_id=user_id,
            author_id=author_id,
            message=message,
            created_at=self._stamp(),
            message_out=message_out,
            tag=tag,
            sub_tag=sub_tag,
            client_id=client_id,
            namespace=client_id if namespace is None else namespace,
            kind=kind,
            attach=attach,
        )
        if notification.portal_tag:
            for earlier in self.notifications:
                if not earlier.removed and earlier.portal_tag == notification.portal_tag:
                    earlier.replaced_by = notification.id
        self.notifications.append(notification)
        return notification

    def shown_notifications(self, user_id: int | None = None) -> list[Notification]:
        """What a user's notification list shows now: every notification not removed by a TAG."""
        return [n for n in self.notifications if not n.removed and (user_id is None or n.user_id == user_id)]


def _people(user_ids: Iterable[int]) -> tuple[int, ...]:
    """A task's list of people: each user once, in the order given, no zeros."""
    return tuple(dict.fromkeys(u for u in user_ids if u > 0))
