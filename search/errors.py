"""The error a user's input or a run folder can cause; the CLI prints it as one line."""

from __future__ import annotations


class SearchError(Exception):
    """A problem the user can fix: a bad budget, a missing run folder, a study that is absent."""


class SearchStopped(SearchError):
    """A search stopped by one of its guards (failures or rejections that keep coming): its
    finished trials are in the study, and its reports are worth writing."""


class VerifyFailed(SearchError):
    """Verify seeds whose training failed (``search.verify``): recorded as failed, the other
    results stored; the message is one line on the failed seeds, and the reports are worth
    writing."""
