"""Alert rule files (monitoring/rules/*.yaml) and the Alertmanager definition. Pure: no pulumi import.

Each rule file becomes one rule group namespace of the Managed Prometheus workspace; promtool
checks and unit-tests the same files in the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from gpufleet.infra.errors import ConfigError

RULES_DIR = Path(__file__).resolve().parent.parent / "monitoring" / "rules"
SEVERITIES = ("critical", "warning", "info")
NAMESPACE = re.compile(r"^[0-9A-Za-z][-.0-9A-Z_a-z]{0,63}$")
"""AMP rule group namespace names: 1-64 characters."""
MAX_NAMESPACE_BYTES = 1024 * 1024
"""AMP's limit on one rule group namespace definition."""


@dataclass(frozen=True, kw_only=True)
class RuleFile:
    """One rule file: one AMP rule group namespace."""

    namespace: str
    """Namespace name: the file's stem."""
    source: str
    """Path of the file, for messages."""
    text: str
    """The file as written (AMP takes the Prometheus rule file format)."""
    alerts: tuple[str, ...]
    """Alert names defined in the file."""
    expressions: tuple[str, ...]
    """PromQL of every rule, for metric-name checks."""


def load_rule_files(rules_dir: Path = RULES_DIR) -> list[RuleFile]:
    """Every ``*.yaml`` under ``rules_dir``, checked for the shape AMP and Alertmanager need."""
    files = sorted(rules_dir.glob("*.yaml"))
    if not files:
        raise ConfigError(str(rules_dir), "(directory)", None, "no rule files (*.yaml)")
    loaded = [_load(path) for path in files]
    seen: dict[str, str] = {}
    for rule_file in loaded:
        for alert in rule_file.alerts:
            if alert in seen:
                raise ConfigError(rule_file.source, "alert", alert, f"also defined in {seen[alert]}")
            seen[alert] = rule_file.source
    return loaded


def _load(path: Path) -> RuleFile:
    source = str(path)
    text = path.read_text()
    if len(text.encode()) > MAX_NAMESPACE_BYTES:
        raise ConfigError(source, "(file)", len(text.encode()), "over AMP's 1 MiB per rule namespace")
    if not NAMESPACE.match(path.stem):
        raise ConfigError(source, "(file name)", path.stem, "not a valid AMP rule namespace name")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(source, "(yaml)", None, f"not valid YAML: {err}") from None
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not isinstance(groups, list) or not groups:
        raise ConfigError(source, "groups", groups, "a rule file holds a non-empty list of groups")
    alerts: list[str] = []
    expressions: list[str] = []
    for g, group in enumerate(groups):
        rules = group.get("rules") if isinstance(group, dict) else None
        if not isinstance(rules, list) or not rules:
            raise ConfigError(source, f"groups[{g}].rules", rules, "a group holds a non-empty list of rules")
        for r, rule in enumerate(rules):
            key = f"groups[{g}].rules[{r}]"
            if not isinstance(rule, dict) or not isinstance(rule.get("expr"), str):
                raise ConfigError(source, f"{key}.expr", None, "every rule needs an expr")
            expressions.append(rule["expr"])
            if "alert" not in rule:
                continue
            severity = (rule.get("labels") or {}).get("severity")
            if severity not in SEVERITIES:
                raise ConfigError(source, f"{key}.labels.severity", severity,
                                  f"alerts are routed by severity: one of {', '.join(SEVERITIES)}")
            if not (rule.get("annotations") or {}).get("summary"):
                raise ConfigError(source, f"{key}.annotations.summary", None, "the page needs a summary")
            alerts.append(rule["alert"])
    return RuleFile(namespace=path.stem, source=source, text=text, alerts=tuple(alerts),
                    expressions=tuple(expressions))


PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "abs", "clamp_min",
    "clamp_max", "label_replace", "label_join", "vector", "scalar", "time", "absent", "sort", "sort_desc",
    "histogram_quantile", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "last_over_time",
}


def metric_names(expression: str) -> set[str]:
    """Metric names a PromQL expression reads (a lexical scan, good for our own rules and panels)."""
    # Drop label matchers, strings and ranges, then take identifiers that are not PromQL words.
    bare = re.sub(r"\{[^}]*\}", "", expression)
    bare = re.sub(r"\"[^\"]*\"", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\$\w+", "", bare)
    bare = re.sub(r"(?<![\w:])\d+(?:ms|[smhdwy])\b", "", bare)  # durations (offset 5m)
    bare = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", "", bare)
    names = set()
    for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare):
        if token in PROMQL_WORDS or re.fullmatch(r"e|inf|nan|\d+", token, re.IGNORECASE):
            continue
        names.add(token)
    return names


def alertmanager_definition(sns_topic_arn: str, region: str) -> str:
    """AMP's alert manager definition: every alert to one SNS topic, grouped by fault and place;
    critical alerts repeat hourly until resolved, the rest every 12 hours."""
    config = {
        "route": {
            "receiver": "sns",
            "group_by": ["alertname", "account", "pool"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            "routes": [{"matchers": ['severity="critical"'], "receiver": "sns", "repeat_interval": "1h"}],
        },
        "inhibit_rules": [{
            # A node that is not Ready reports no GPU metrics worth paging about separately.
            "source_matchers": ['alertname="KubeNodeNotReady"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["account", "node"],
        }],
        "receivers": [{"name": "sns", "sns_configs": [{
            "topic_arn": sns_topic_arn,
            "sigv4": {"region": region},
            "subject": "gpufleet: {{ .CommonLabels.alertname }} ({{ .CommonLabels.severity }})",
            "attributes": {"severity": "{{ .CommonLabels.severity }}", "alertname": "{{ .CommonLabels.alertname }}"},
        }]}],
    }
    body = yaml.safe_dump(config, sort_keys=False, width=120)
    return "alertmanager_config: |\n" + "".join(f"  {line}\n" for line in body.splitlines())
