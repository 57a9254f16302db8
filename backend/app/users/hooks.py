"""What other features do when an account is deleted: they subscribe here, users calls.

Every feature that stores something about a user sits above `users` and is not imported by
it: each fills these hook points at import, from its service module, and `create_app`
refuses to start while one has no subscriber. Subscribers run in the caller's transaction
(the deletion's), so a refusal, or any failure, leaves everything as it was.
"""

from collections.abc import Callable

from app.core.hooks import Hook

# (session, user): the account is about to be deleted; raise to refuse it (e.g. it is the
# only owner of a trip). Runs before any `account_deleting` subscriber.
account_deletable: Hook[Callable[..., None]] = Hook("account_deletable")
# (session, user): the account is being deleted; end or anonymise what refers to it
# (memberships, participants, private rows, stored responses...). The user row itself is
# anonymised afterwards by users.
account_deleting: Hook[Callable[..., None]] = Hook("account_deleting")

# (session, session_ids): these sessions (devices) just ended, in the caller's transaction:
# what runs on their behalf stops at commit (their open event streams).
sessions_ended: Hook[Callable[..., None]] = Hook("sessions_ended")

HOOKS = (account_deletable, account_deleting, sessions_ended)


def unsubscribed() -> list[str]:
    """The hook points nobody subscribed to: a feature module was never imported."""
    return [hook.name for hook in HOOKS if not hook.subscribers]
