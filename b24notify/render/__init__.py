"""Rendering alerts for people, in their language: the chat message (BBCode) and the e-mail
(text + HTML), for one alert or a digest of one task's alerts.

Pure functions over ``Alert``s; the channels do the sending.
"""

from b24notify.render.bbcode import neutralize_bbcode, strip_bbcode
from b24notify.render.chat import render_chat
from b24notify.render.email import MailRenderer, render_email

__all__ = ["MailRenderer", "neutralize_bbcode", "render_chat", "render_email", "strip_bbcode"]
