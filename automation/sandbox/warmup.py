"""Pay each service's first-call costs while `gpufleet sandbox up` is still rendering the program.

The first call to a moto service builds its Flask app, loads its data and models (EC2 alone takes
about a second); later calls take milliseconds. The server reports ready first, then runs one of
each call the apply makes, in an account no stack uses (``WARM_ACCOUNT``), straight into moto (not
through the extension: nothing is logged or counted), and then forgets that account in every
service. A real request arriving meanwhile waits on the capacity lock for at most one warm call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

WARM_ACCOUNT = "000000000000"
REGION = "us-east-1"
VERSIONS = {"sts": "2011-06-15", "iam": "2010-05-08", "ec2": "2016-11-15", "autoscaling": "2011-01-01"}

QUERY_CALLS: tuple[tuple[str, dict[str, str]], ...] = (
    ("sts", {"Action": "GetCallerIdentity"}),
    ("sts", {"Action": "AssumeRole", "RoleArn": f"arn:aws:iam::{WARM_ACCOUNT}:role/warm", "RoleSessionName": "warm"}),
    ("iam", {"Action": "CreateRole", "RoleName": "warm",
             "AssumeRolePolicyDocument": json.dumps({"Version": "2012-10-17", "Statement": []})}),
    ("iam", {"Action": "PutRolePolicy", "RoleName": "warm", "PolicyName": "warm",
             "PolicyDocument": json.dumps({"Version": "2012-10-17", "Statement": [
                 {"Effect": "Allow", "Action": "ec2:DescribeVpcs", "Resource": "*"}]})}),
    ("iam", {"Action": "AttachRolePolicy", "RoleName": "warm",
             "PolicyArn": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}),
    ("iam", {"Action": "CreateInstanceProfile", "InstanceProfileName": "warm"}),
    ("ec2", {"Action": "CreateVpc", "CidrBlock": "10.0.0.0/16"}),
    ("ec2", {"Action": "CreateLaunchTemplate", "LaunchTemplateName": "warm",
             "LaunchTemplateData.ImageId": "ami-12345678", "LaunchTemplateData.InstanceType": "m5.large"}),
    ("autoscaling", {"Action": "CreateAutoScalingGroup", "AutoScalingGroupName": "warm", "MinSize": "0",
                     "MaxSize": "1", "DesiredCapacity": "1", "LaunchTemplate.LaunchTemplateName": "warm",
                     "AvailabilityZones.member.1": f"{REGION}a"}),
)
JSON_CALLS: tuple[tuple[str, str, dict[str, str], dict[str, Any]], ...] = (
    ("dynamodb", "/", {"X-Amz-Target": "DynamoDB_20120810.CreateTable"},
     {"TableName": "warm", "BillingMode": "PAY_PER_REQUEST",
      "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
      "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}),
    ("ram", "/createresourceshare", {}, {"name": "warm"}),
)


def _headers(service: str) -> dict[str, str]:
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKIAWARMUPWARMUPWARM/20260101/{REGION}/{service}/"
                             "aws4_request, SignedHeaders=host, Signature=0",
            "X-Moto-Account-Id": WARM_ACCOUNT, "Host": f"{service}.{REGION}.amazonaws.com"}


def warm_up(moto_app: Callable[..., Iterable[bytes]], lock: Any) -> None:
    """Run the warm calls against ``moto_app`` (moto's own WSGI application), then drop the account."""
    from moto.core.base_backend import BackendDict, backend_lock
    from werkzeug.test import Client

    client = Client(moto_app)
    for service, params in QUERY_CALLS:
        with lock:
            client.post("/", data={**params, "Version": VERSIONS[service]}, headers=_headers(service),
                        content_type="application/x-www-form-urlencoded")
    for service, path, extra, body in JSON_CALLS:
        content_type = "application/x-amz-json-1.0" if service == "dynamodb" else "application/json"
        with lock:
            client.post(path, data=json.dumps(body), headers={**_headers(service), **extra}, content_type=content_type)
    with lock, backend_lock:
        for backend_dict in BackendDict._instances:  # type: ignore[misc]
            backend_dict.pop(WARM_ACCOUNT, None)


def start(moto_app: Callable[..., Iterable[bytes]], lock: Any) -> threading.Thread:
    thread = threading.Thread(target=warm_up, args=(moto_app, lock), name="gpufleet-warm-up", daemon=True)
    thread.start()
    return thread
