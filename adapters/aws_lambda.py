"""AWS Lambda, buffered: the app under Mangum, for API Gateway and ALB events.

How the platform calls it: ``handler(event, context)`` once per request, with an API Gateway REST
(v1) or HTTP API (v2) event, a Lambda Function URL event (v2 format) or an ALB event; Mangum
recognises which and turns it into an ASGI request for the same ``app`` uvicorn serves.

How it streams: it does not. Mangum collects the whole response before returning it (its own
docs: "never streamed"), and API Gateway HTTP APIs cannot stream either, so a streamed chat
arrives all at once at the end (within Lambda's 6 MB response limit). For real streaming use the
Lambda Web Adapter entry point, ``adapters/lambda_web_adapter.sh``, behind a Function URL in
``RESPONSE_STREAM`` mode; this handler is the fallback.
"""

from __future__ import annotations

from mangum import Mangum

from .app import app

# lifespan off: the app needs no start-up work, and a Lambda instance has no shutdown hook to run.
handler = Mangum(app, lifespan="off")
