"""An empty HTTP function: the cold-start yardstick, started the same way as ours."""

import functions_framework


@functions_framework.http
def empty(request):
    return "ok"
