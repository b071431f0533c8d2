"""Reference for tests/monitoring.rs: the Prometheus text format as prometheus_client parses it.

Reads an exposition on stdin and prints JSON: the families (name, type, help) and every sample
(name, labels, value) that prometheus_client.parser.text_string_to_metric_families found, with
the prometheus_client version. A malformed exposition makes the parser raise: exit 1.
"""
import json
import sys
from importlib.metadata import version

from prometheus_client.parser import text_string_to_metric_families

families = []
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({"name": family.name, "type": family.type, "help": family.documentation})
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps({"version": version("prometheus-client"), "families": families, "samples": samples}))
