"""Cold-start yardsticks, started the same way as our functions.

- `empty`: an empty HTTP function, the yardstick of target 4.
- `libraries`: the same, whose first request imports and uses the two libraries every
  money-moving function needs by design (pydantic validates the body, pg8000 talks to
  Postgres). It shows how much of a function's cold start those libraries alone take.
"""

import functions_framework


@functions_framework.http
def empty(request):
    return "ok"


@functions_framework.http
def libraries(request):
    import pg8000.native
    import pydantic

    class Body(pydantic.BaseModel):
        amount: int

    Body(amount=1)
    assert pg8000.native.Connection is not None
    return "ok"
