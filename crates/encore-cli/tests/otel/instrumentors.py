"""Real GenAI instrumentations against encore: the OpenAI Python client, instrumented by the
OpenTelemetry `openai-v2` instrumentation (content as log events, its default content mode) or
by OpenInference's, calls a fake OpenAI server started here; spans go to encore's /v1/traces
and events to /v1/logs.

    python instrumentors.py ENCORE_URL openai-v2|openinference PROJECT [GRPC_HOST_PORT]

With GRPC_HOST_PORT, spans and log events go over OTLP/gRPC instead of OTLP/HTTP.

Prints the trace ids of the calls, one per line: a call that succeeds, then one the server
fails (500).
"""
import http.server
import json
import os
import sys
import threading

encore, mode, project = sys.argv[1], sys.argv[2], sys.argv[3]
grpc = sys.argv[4] if len(sys.argv) > 4 else None

if mode == "openai-v2":
    # content as log events: the instrumentation's mode on its default conventions
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"


class FakeOpenAI(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request["model"] == "gpt-4o-mini" and request.get("temperature") == 1.5:
            body = json.dumps({"error": {"message": "overloaded", "type": "server_error"}})
            self.send_response(500)
        else:
            body = json.dumps({
                "id": "chatcmpl-encore-1",
                "object": "chat.completion",
                "created": 1765000000,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "1. Teardrop by Massive Attack"},
                }],
                "usage": {"prompt_tokens": 41, "completion_tokens": 9, "total_tokens": 50},
            })
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
threading.Thread(target=server.serve_forever, daemon=True).start()

if grpc:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

resource = Resource.create({"service.name": "playlist-writer", "openinference.project.name": project})
key = os.environ.get("ENCORE_API_KEY")
headers = {"Authorization": f"Bearer {key}"} if key else {}
tracer_provider = TracerProvider(resource=resource)
if grpc:
    span_exporter = OTLPSpanExporter(endpoint=f"http://{grpc}", insecure=True,
                                     headers=tuple((k.lower(), v) for k, v in headers.items()))
else:
    span_exporter = OTLPSpanExporter(endpoint=f"{encore}/v1/traces", headers=headers)
tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
logger_provider = None

if mode == "openai-v2":
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    logger_provider = LoggerProvider(resource=resource)
    if grpc:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        log_exporter = OTLPLogExporter(endpoint=f"http://{grpc}", insecure=True,
                                       headers=tuple((k.lower(), v) for k, v in headers.items()))
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        log_exporter = OTLPLogExporter(endpoint=f"{encore}/v1/logs", headers=headers)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
else:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)

import openai
from opentelemetry import trace

client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="sk-test",
                       max_retries=0)
messages = [
    {"role": "system", "content": "You write playlists from the catalog only."},
    {"role": "user", "content": "rainy sunday trip-hop"},
]
tracer = trace.get_tracer("encore-test", tracer_provider=tracer_provider)
for temperature in (0.3, 1.5):
    with tracer.start_as_current_span("playlist request") as root:
        print(format(root.get_span_context().trace_id, "032x"), flush=True)
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                           temperature=temperature)
        except openai.InternalServerError:
            pass
tracer_provider.shutdown()
if logger_provider is not None:
    logger_provider.shutdown()
server.shutdown()
