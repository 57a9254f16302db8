"""A route class whose JSON bodies keep decimal numbers exact (for money and exchange rates)."""

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class _ExactNumbersRequest(Request):
    async def json(self) -> Any:
        # `1.0837` becomes Decimal("1.0837"), never the binary float 1.08369999999999999...;
        # integers stay int, so an amount in minor units written as `12.0` is still refused.
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal, parse_constant=Decimal)
        return self._json


class ExactNumbersRoute(APIRoute):
    """Use as `APIRouter(route_class=ExactNumbersRoute)`: decimals in bodies parse exactly."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_handler(request: Request) -> Response:
            return await handler(_ExactNumbersRequest(request.scope, request.receive))

        return exact_handler
