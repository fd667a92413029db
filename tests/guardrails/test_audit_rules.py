"""The audit rules on hand-built resources: what counts as an object-level record of a bucket."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.infra.audit_trail import event_selectors
from gpufleet.infra.guardrails import FleetContext
from gpufleet.infra.guardrails.audit_rules import check_object_level
from gpufleet.infra.rendered import RenderedResource

ACCOUNT = "222222222222"
CTX = FleetContext(stacks=())


def res(type_token: str, logical: str, **inputs: Any) -> RenderedResource:
    return RenderedResource(stack="training", role="training", account_id=ACCOUNT, region="us-east-1",
                            type=type_token, name=logical, urn=f"urn:pulumi:training::gpufleet::{type_token}::{logical}",
                            inputs=inputs, outputs=dict(inputs))


def bucket(name: str) -> RenderedResource:
    return res("aws:s3/bucket:Bucket", name, bucket=name)


def advanced(selectors) -> list[dict[str, Any]]:
    """The selectors as the engine receives them (camelCase, empty lists dropped)."""
    return [{"name": s.name, "fieldSelectors": [
        {k: v for k, v in (("field", f.field), ("equals", list(f.equals)), ("startsWiths", list(f.starts_with)),
                           ("notStartsWiths", list(f.not_starts_with))) if v} for f in s.fields]} for s in selectors]


def trail(**inputs: Any) -> RenderedResource:
    return res("aws:cloudtrail/trail:Trail", "trail", s3BucketName="logs", **inputs)


def flagged(*resources: RenderedResource) -> list[str]:
    return sorted(v.resource for v in check_object_level(resources, CTX))


def test_the_baseline_selectors_cover_every_bucket_and_reads_of_the_log_bucket():
    selectors = advanced(event_selectors("arn:aws:s3:::logs"))
    assert flagged(trail(advancedEventSelectors=selectors), bucket("logs"), bucket("datasets")) == []


def test_a_trail_with_management_events_only_records_no_object():
    selectors = advanced(event_selectors("arn:aws:s3:::logs"))[:1]
    assert flagged(trail(advancedEventSelectors=selectors), bucket("logs"), bucket("datasets")) == [
        "datasets", "logs"]


@pytest.mark.parametrize("extra", [
    {"field": "eventName", "equals": ["GetObject"]},
    {"field": "readOnly", "equals": ["false"]},
])
def test_a_selector_narrowed_to_some_events_is_not_a_record_of_every_access(extra):
    selectors = advanced(event_selectors("arn:aws:s3:::logs"))
    selectors[1]["fieldSelectors"].append(extra)
    assert flagged(trail(advancedEventSelectors=selectors), bucket("datasets")) == ["datasets"]


def test_excluding_part_of_a_bucket_leaves_it_unrecorded():
    selectors = advanced(event_selectors("arn:aws:s3:::logs"))
    selectors[1]["fieldSelectors"][2]["notStartsWiths"].append("arn:aws:s3:::datasets/private/")
    assert flagged(trail(advancedEventSelectors=selectors), bucket("datasets"), bucket("releases")) == ["datasets"]


def test_basic_data_resources_count_by_read_write_type():
    def basic(kind: str) -> list[dict[str, Any]]:
        return [{"readWriteType": kind, "dataResources": [{"type": "AWS::S3::Object", "values": ["arn:aws:s3"]}]}]
    assert flagged(trail(eventSelectors=basic("All")), bucket("datasets")) == []
    assert flagged(trail(eventSelectors=basic("WriteOnly")), bucket("datasets")) == ["datasets"]


def test_server_access_logs_count_only_into_another_bucket():
    to_sink = res("aws:s3/bucketLogging:BucketLogging", "datasets-log", bucket="datasets", targetBucket="sink")
    to_itself = res("aws:s3/bucketLogging:BucketLogging", "sink-log", bucket="sink", targetBucket="sink")
    assert flagged(bucket("datasets"), bucket("sink"), to_sink, to_itself) == ["sink"]
