"""The client openapi-python-client generates from encore's OpenAPI document, against a running
server: every call is typed, every answer parsed into its model (an answer the schema does not
describe fails here).

    python roundtrip.py CLIENT_PARENT_DIR BASE_URL API_KEY EVENTS_JSON USER ITEM
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
base, key, events_file, user, item = sys.argv[2:7]

from encore_client import AuthenticatedClient
from encore_client.api.events import event_stats, post_events
from encore_client.api.operations import healthz
from encore_client.api.registry import history, list_models, versions
from encore_client.api.serving import ready, similar, user_recommendations
from encore_client.api.traces import count, list_spans, span_stats, trace
from encore_client import models as m

client = AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)


def typed(value, cls):
    assert isinstance(value, cls), f"expected {cls.__name__}, got {type(value).__name__}: {value!r}"
    return value


health = typed(healthz.sync(client=client), m.Health)
assert health.status == "ok"
typed(ready.sync(client=client), m.Ready)

events = [m.PlaybackEvent.from_dict(e) for e in json.load(open(events_file))]
posted = typed(post_events.sync(client=client, body=events), m.PostEventsResponse)
assert posted.accepted + posted.duplicates == len(events), posted
stats = typed(event_stats.sync(client=client), m.EventStats)
assert stats.plays >= posted.accepted and stats.days, stats

slate = typed(user_recommendations.sync(id=user, client=client, n=5), m.Slate)
assert len(slate.items) == 5 and slate.model_version >= 1, slate
typed(similar.sync(id=item, client=client, n=3), m.Slate)

models = list_models.sync(client=client)
assert models and all(isinstance(x, m.ModelSummary) for x in models), models
name = models[0].name
assert all(isinstance(v, m.Version) for v in versions.sync(name=name, client=client))
assert all(isinstance(h, m.AliasMove) for h in history.sync(name=name, client=client))

spans = typed(list_spans.sync(client=client, project="client"), m.SpanList)
assert spans.spans and all(isinstance(s, m.SpanRow) for s in spans.spans), spans
assert typed(count.sync(client=client, project="client"), m.SpanCount).count == len(spans.spans)
rows = typed(span_stats.sync(client=client, project="client"), m.SpanStats).rows
assert rows and rows[0].count > 0, rows
tree = typed(trace.sync(trace_id=spans.spans[0].trace_id, client=client), m.Trace)
assert tree.spans, tree
print("round trip ok:", len(events), "events,", len(spans.spans), "spans,", len(models), "models")
