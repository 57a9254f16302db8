"""Hook points: how a feature lets the features below it in a relation react, without
importing them (a parent calls the hook, its children subscribe from their service module)."""

from collections.abc import Callable
from typing import Any, Generic, TypeVar

Subscriber = TypeVar("Subscriber", bound=Callable[..., Any])


class Hook(Generic[Subscriber]):
    """One hook point: a list of subscribers, each called with the same keyword arguments."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Subscriber:
        if subscriber not in self.subscribers:
            self.subscribers.append(subscriber)
        return subscriber

    def __call__(self, **arguments: Any) -> list[Any]:
        return [subscriber(**arguments) for subscriber in self.subscribers]
