"""Unrestricted clients in the sandbox's accounts, for tests of the emulator itself.

The deployer (key ``testing``; in a consumer account a session of a deploy role the program does not
create, as a stack's provider enters it) may do anything, as an administrator may. Tests of the
capacity emulator and of the apply use it; tests of the automation use ``AwsAccess``, which enters
through the rendered roles and is evaluated against their policies.
"""

from __future__ import annotations

from typing import Any

import boto3

from gpufleet.automation.inventory import load_inventory
from gpufleet.automation.sandbox.control import SANDBOX_CREDENTIALS

DEPLOY_ROLE = "gpufleet-sandbox-deployer"


class DeployerAccess:
    """``client(stack, service)`` as the deployer."""

    def __init__(self, sandbox: Any) -> None:
        self.endpoint = sandbox.endpoint
        self.inventory = load_inventory(sandbox.inventory)
        self._sessions: dict[str, boto3.Session] = {}

    def session(self, stack: str) -> boto3.Session:
        if stack not in self._sessions:
            account = self.inventory.stacks[stack]
            base = boto3.Session(aws_access_key_id=SANDBOX_CREDENTIALS[0], aws_secret_access_key=SANDBOX_CREDENTIALS[1],
                                 region_name=account.region)
            if stack != self.inventory.platform_stack:
                creds = base.client("sts", endpoint_url=self.endpoint).assume_role(
                    RoleArn=f"arn:aws:iam::{account.account_id}:role/{DEPLOY_ROLE}",
                    RoleSessionName="gpufleet-test")["Credentials"]
                base = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                     aws_session_token=creds["SessionToken"], region_name=account.region)
            self._sessions[stack] = base
        return self._sessions[stack]

    def client(self, stack: str, service: str) -> Any:
        return self.session(stack).client(service, endpoint_url=self.endpoint)
