"""Exports GenAI spans to encore with the OpenTelemetry Python SDK, over OTLP/HTTP protobuf or
OTLP/gRPC.

    python export_genai.py http://127.0.0.1:PORT/v1/traces N PROJECT
    python export_genai.py grpc://127.0.0.1:PORT N PROJECT
    OTEL_EXPORTER_OTLP_CERTIFICATE=ca.pem python export_genai.py grpcs://localhost:PORT N PROJECT

One trace per call: a root CHAIN span and a child `chat` span with the GenAI conventions
(tokens by type, models, provider) and a prompt carrying an email address.
"""
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

endpoint, n, project = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if endpoint.startswith("grpc://"):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint[len("grpc://"):], insecure=True)
elif endpoint.startswith("grpcs://"):
    # TLS, trusting the CA in OTEL_EXPORTER_OTLP_CERTIFICATE
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    import os
    with open(os.environ["OTEL_EXPORTER_OTLP_CERTIFICATE"], "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    exporter = OTLPSpanExporter(endpoint=endpoint[len("grpcs://"):], insecure=False, credentials=credentials)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint)
provider = TracerProvider(resource=Resource.create({
    "service.name": "playlist-writer",
    "openinference.project.name": project,
}))
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("encore-sdk-test")
for i in range(n):
    with tracer.start_as_current_span("playlist.generate", kind=SpanKind.SERVER) as root:
        root.set_attribute("openinference.span.kind", "CHAIN")
        root.set_attribute("user.id", f"listener-{i % 7}")
        with tracer.start_as_current_span("chat claude-sonnet-4", kind=SpanKind.CLIENT) as llm:
            llm.set_attributes({
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4",
                "gen_ai.response.model": "claude-sonnet-4-20250514",
                "gen_ai.usage.input_tokens": 1200 + i,
                "gen_ai.usage.output_tokens": 300,
                "gen_ai.usage.cache_read.input_tokens": 1000,
                "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "songs like Nick Drake, reply to me@example.net"}]}]',
            })
provider.force_flush()
provider.shutdown()
