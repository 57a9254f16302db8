"""The app's one route class: JSON bodies keep decimal numbers exact (money, exchange rates)."""

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class AppRequest(Request):
    async def json(self) -> Any:
        # `1.0837` becomes Decimal("1.0837"), never the binary float 1.08369999999999999...;
        # integers stay int, so an amount in minor units written as `12.0` is still refused.
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal, parse_constant=Decimal)
        return self._json


class AppRoute(APIRoute):
    """Use as `APIRouter(route_class=AppRoute)` for every router."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def app_handler(request: Request) -> Response:
            return await handler(AppRequest(request.scope, request.receive))

        return app_handler
