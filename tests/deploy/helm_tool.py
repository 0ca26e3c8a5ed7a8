"""Run by the tools venv's python (helm-python-sdk: Helm v4's own lint, render and schema check).

python helm_tool.py CHART VALUES_JSON  ->  {"lint": …, "rendered": {path: yaml}} or {"error": "…"}
"""

import json
import sys

import helm_python as helm

chart_path, values = sys.argv[1], json.loads(sys.argv[2])
out = {}
try:
    chart = helm.Chart.load(chart_path)
    chart.validate_schema(values)
    out["lint"] = helm.lint(chart_path, values, strict=True)
    out["rendered"] = chart.render(values, name="lg", namespace="ai", is_install=True)
except helm.HelmError as err:
    out["error"] = str(err)
print(json.dumps(out))
