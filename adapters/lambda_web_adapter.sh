#!/bin/sh
# AWS Lambda, streaming: the handler script of a function that runs the AWS Lambda Web Adapter
# layer (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap, AWS_LWA_INVOKE_MODE=response_stream).
#
# How the platform calls it: Lambda starts this script once per instance; the adapter waits until
# the app answers on $PORT, then forwards each Function URL request to it as plain HTTP.
# How it streams: uvicorn writes each chunk as it is produced and the adapter streams it on
# (Function URL with InvokeMode RESPONSE_STREAM), so SSE reaches the client token by token.
set -eu
root="${LAMBDA_TASK_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
exec python3 -m uvicorn adapters.app:app --host 127.0.0.1 --port "${PORT:-8080}" --no-access-log
