"""Rules across stacks: the only cross-account paths are (1) pool capacity by RAM, (2) training ->
release bucket -> inference read-only, (3) metrics to the platform's Prometheus, (4) the operator
role assumed from the platform (DESIGN.md "Accounts and stacks"). Pure: no pulumi import.

Each check gets every resource it may judge (all stacks offline; one stack in the policy pack) and
the fleet's accounts from the stack files, so the pack can still tell a training account id from
an inference one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gpufleet.infra.guardrails import policy_documents as docs
from gpufleet.infra.guardrails.linking import companions, of_type, refers_to
from gpufleet.infra.guardrails.model import (
    FleetContext,
    Resource,
    Rule,
    Scope,
    Severity,
    Unevaluable,
    Unknown,
    Violation,
    get,
)

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
RAM_PRINCIPAL = "aws:ram/principalAssociation:PrincipalAssociation"
RAM_RESOURCE = "aws:ram/resourceAssociation:ResourceAssociation"
RAM_SHARE = "aws:ram/resourceShare:ResourceShare"
ACCESS_ENTRY = "aws:eks/accessEntry:AccessEntry"


def _violation(resource: Resource, message: str) -> Violation:
    return Violation(resource=resource.name, urn=resource.urn, message=message)


def _unevaluable(resource: Resource, prop: str, problem: str) -> Violation:
    return _violation(resource, f"{resource.type.rsplit(':', 1)[-1]} {resource.name}: cannot evaluate: {prop} "
                                f"{problem}. Set it to a literal value the guardrail can read.")


def _documents(resource: Resource) -> Iterator[tuple[str, object]]:
    yield from docs.iter_documents(resource.type, resource.inputs)


def check_no_training_in_phi(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    """Nothing in a PHI account names a training account: no policy principal or condition, no RAM
    share principal, no EKS access entry."""
    training = ctx.training_accounts
    for resource in resources:
        if not resource.account_id and (resource.type in docs.DOCUMENT_PROPS or resource.type in (RAM_PRINCIPAL, ACCESS_ENTRY)):
            yield _unevaluable(resource, "the provider's allowedAccountIds",
                               "is not set, so whether the account holds PHI is unknown")
            continue
        if not ctx.is_phi(resource.account_id):
            continue
        for prop, document in _documents(resource):
            try:
                statements = docs.parse(document, prop)
            except Unevaluable as err:
                yield _violation(resource, f"{resource.type} {resource.name}: cannot read {err}; the guardrail "
                                           "cannot prove it names no training principal. Make it a JSON policy.")
                continue
            for st in statements:
                if not st.allows:
                    continue
                named = docs.accounts_named(st) & training
                if named:
                    yield _violation(resource, (
                        f"{resource.type.rsplit(':', 1)[-1]} {resource.name} in PHI account {resource.account_id} "
                        f"({prop}, statement {st.sid}) grants training account {', '.join(sorted(named))}. "
                        "Training never gets access to the production account: models reach it only "
                        "through the platform's release bucket. Remove the statement."))
        if resource.type in (RAM_PRINCIPAL, ACCESS_ENTRY):
            prop = "principal" if resource.type == RAM_PRINCIPAL else "principalArn"
            principal = get(resource, prop)
            if isinstance(principal, str) and docs.account_of(principal) in training:
                yield _violation(resource, (
                    f"{resource.type.rsplit(':', 1)[-1]} {resource.name} in PHI account {resource.account_id} "
                    f"names training principal {principal}. Remove it."))


RELEASE_READ = ("s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:GetBucketLocation")
RELEASE_WRITE = RELEASE_READ + ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
                                "s3:ListBucketMultipartUploads")


def check_release_flow(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    """Bucket policies grant other accounts only on the platform's release bucket: training may
    write, inference may only read."""
    for policy in of_type(resources, BUCKET_POLICY):
        try:
            statements = docs.parse(get(policy, "policy"), "policy")
        except Unevaluable as err:
            yield _violation(policy, f"BucketPolicy {policy.name}: cannot read {err}. Make it a JSON policy.")
            continue
        for st in statements:
            if not st.allows:
                continue
            for principal in st.aws_principals:
                account = docs.account_of(principal)
                if principal == "*" or account == policy.account_id:
                    continue  # public grants: s3.no-public-grants; own account: not a cross-account path
                if account is None:
                    yield _violation(policy, f"BucketPolicy {policy.name} names principal {principal!r}, which "
                                             "belongs to no account the guardrail can identify. Use role ARNs.")
                    continue
                if policy.account_id not in ctx.platform_accounts:
                    yield _violation(policy, (
                        f"BucketPolicy {policy.name} in {policy.role or policy.account_id} grants {principal} "
                        f"of account {account}. Only the platform's release bucket is shared across accounts; "
                        "publish to it instead."))
                    continue
                if account in ctx.inference_accounts:
                    allowed, who = RELEASE_READ, "inference"
                elif account in ctx.training_accounts:
                    allowed, who = RELEASE_WRITE, "training"
                else:
                    yield _violation(policy, (f"BucketPolicy {policy.name} grants {principal}, outside the fleet's "
                                              "consumer accounts. Remove the statement."))
                    continue
                extra = docs.actions_within(st, allowed)
                if extra:
                    yield _violation(policy, (
                        f"BucketPolicy {policy.name} statement {st.sid} grants {who} principal {principal} "
                        f"{', '.join(extra)}. {who} may only have {', '.join(allowed)} on the release bucket."))


def check_phi_dra(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    """FSx in a PHI account imports from and exports to buckets of that account only."""
    for dra in of_type(resources, "aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation"):
        if not ctx.is_phi(dra.account_id):
            continue
        path = get(dra, "dataRepositoryPath")
        if isinstance(path, Unknown) or not isinstance(path, str) or not path.startswith("s3://"):
            yield _unevaluable(dra, "dataRepositoryPath", f"is {path!r}, not s3://bucket/prefix")
            continue
        bucket_name = path[len("s3://"):].split("/", 1)[0]
        own = [b for b in of_type(resources, BUCKET)
               if b.account_id == dra.account_id and bucket_name in
               {get(b, "bucket", default=None), b.outputs.get("id"), b.outputs.get("bucket")}]
        if not own:
            yield _violation(dra, (
                f"DataRepositoryAssociation {dra.name} in PHI account {dra.account_id} links {path}, which is "
                "not a bucket of this account. PHI file systems link only to buckets the PHI account owns; "
                "copy datasets in through the release path instead."))


CAPACITY_RESERVATION_ARN = ":capacity-reservation/"


def check_ram_capacity_only(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    for share in of_type(resources, RAM_SHARE, RAM_RESOURCE, RAM_PRINCIPAL):
        if share.account_id not in ctx.platform_accounts:
            yield _violation(share, (
                f"{share.type.rsplit(':', 1)[-1]} {share.name} shares from {share.role or share.account_id}. "
                "Only the platform account shares, and only capacity reservations."))
    for assoc in of_type(resources, RAM_RESOURCE):
        arn = get(assoc, "resourceArn")
        if isinstance(arn, Unknown):
            yield _unevaluable(assoc, "resourceArn", "is not known yet (computed during preview)")
        elif not (isinstance(arn, str) and arn.startswith("arn:") and arn.split(":")[2:3] == ["ec2"]
                and CAPACITY_RESERVATION_ARN in arn):
            yield _violation(assoc, (
                f"ResourceAssociation {assoc.name} shares {arn}. RAM shares carry capacity reservations "
                "(arn:aws:ec2:<region>:<account>:capacity-reservation/cr-...) and nothing else."))


def check_ram_principals(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    for assoc in of_type(resources, RAM_PRINCIPAL):
        principal = get(assoc, "principal")
        if principal not in ctx.consumer_accounts:
            yield _violation(assoc, (
                f"PrincipalAssociation {assoc.name} shares with {principal!r}. Share pools only with the "
                "consumer account ids named in the platform stack's consumerAccounts (not OUs, "
                "organizations or other accounts)."))


RAM_SHARE = "aws:ram/resourceShare:ResourceShare"
RAM_ACCEPTER = "aws:ram/resourceShareAccepter:ResourceShareAccepter"


def check_ram_accepted(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    """A share with external principals reaches a consumer only once that consumer accepts it."""
    planned = {r.account_id for r in resources}
    accepted = {(r.account_id, get(r, "shareArn", default="")) for r in of_type(resources, RAM_ACCEPTER)}
    for share in of_type(resources, RAM_SHARE):
        if not get(share, "allowExternalPrincipals", default=False):
            continue  # inside the Organization: visible at once
        arn = share.outputs.get("arn") or share.inputs.get("arn")
        for assoc in of_type(resources, RAM_PRINCIPAL):
            account = get(assoc, "principal")
            if not refers_to(assoc, "resourceShareArn", share) or account not in planned:
                continue
            if (account, arn) not in accepted:
                yield _violation(share, (
                    f"ResourceShare {share.name} allows external principals, but {account} "
                    f"({ctx.role_of(account) or '?'}) has no ResourceShareAccepter for it: the consumer never "
                    "sees the reservation. Set gpufleet:ramSharing: invitation in every stack file (consumers "
                    "accept), or organization (no external principals, RAM sharing with AWS Organizations on)."))


AMP_WORKSPACE = "aws:amp/workspace:Workspace"


def check_metrics_platform_only(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    """Prometheus lives in the platform account; remote write goes there and nowhere else."""
    for workspace in of_type(resources, AMP_WORKSPACE):
        if workspace.account_id not in ctx.platform_accounts:
            yield _violation(workspace, (
                f"Workspace {workspace.name} is in {workspace.role or workspace.account_id}. The only "
                "Prometheus workspace is the platform's; remote-write there."))
    for resource in resources:
        for prop, document in _documents(resource):
            if prop == "assumeRolePolicy":
                continue
            try:
                statements = docs.parse(document, prop)
            except Unevaluable:
                continue  # the resource's own rule reports unreadable documents
            for st in statements:
                if not st.allows or not any(docs.action_matches(a, "aps:RemoteWrite") for a in st.actions):
                    continue
                outside = [r for r in st.resources if docs.account_of(r) not in ctx.platform_accounts]
                if outside:
                    yield _violation(resource, (
                        f"{resource.type.rsplit(':', 1)[-1]} {resource.name} ({prop}) allows aps:RemoteWrite to "
                        f"{', '.join(outside)}. Remote write goes only to the platform workspace's ARN."))
                if resource.account_id in ctx.platform_accounts and resource.type == "aws:iam/role:Role":
                    yield from _remote_write_trust(resource, ctx)
    for policy in of_type(resources, "aws:iam/rolePolicy:RolePolicy"):
        if policy.account_id not in ctx.platform_accounts:
            continue
        try:
            grants = any(st.allows and any(docs.action_matches(a, "aps:RemoteWrite") for a in st.actions)
                         for st in docs.parse(get(policy, "policy"), "policy"))
        except Unevaluable:
            continue
        if grants:
            for role in of_type(resources, "aws:iam/role:Role"):
                if companions([policy], role, "role", policy.type):
                    yield from _remote_write_trust(role, ctx)


def _remote_write_trust(role: Resource, ctx: FleetContext) -> Iterator[Violation]:
    for st in docs.parse(get(role, "assumeRolePolicy"), "assumeRolePolicy"):
        if not st.allows:
            continue
        for principal in st.aws_principals:
            account = docs.account_of(principal)
            if account not in ctx.consumer_accounts and account != role.account_id:
                yield _violation(role, (
                    f"remote-write role {role.name} trusts {principal}. Only the fleet's consumer accounts "
                    f"({', '.join(sorted(ctx.consumer_accounts))}) remote-write to the platform workspace."))


def check_assume_only_platform(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    """Principals of a consumer account assume roles only in their own account or the platform's
    (the remote-write role); never elsewhere, never ``*``."""
    if not ctx.platform_accounts:
        return  # no platform stack in the plan: fleet.platform-in-plan says so
    for resource in resources:
        if resource.account_id not in ctx.consumer_accounts:
            continue
        for prop, document in _documents(resource):
            if prop == "assumeRolePolicy":
                continue
            try:
                statements = docs.parse(document, prop)
            except Unevaluable:
                continue  # the resource's own rule reports unreadable documents
            for st in statements:
                if st.has_principal or not st.allows or not any(
                        docs.action_matches(a, "sts:AssumeRole") for a in st.actions):
                    continue
                outside = [r for r in st.resources
                           if docs.account_of(r) not in ctx.platform_accounts | {resource.account_id}]
                if outside:
                    yield _violation(resource, (
                        f"{resource.type.rsplit(':', 1)[-1]} {resource.name} ({prop}) lets principals of "
                        f"{resource.role or resource.account_id} assume {', '.join(outside)}. Consumer accounts "
                        "leave only for the platform's roles (metrics remote write); name that role's ARN."))


def check_platform_in_plan(resources: Sequence[Resource], ctx: FleetContext) -> Iterator[Violation]:
    """Cross-account trust can only be judged against the platform's account."""
    if ctx.platform_accounts:
        return
    for stack in dict.fromkeys(r.stack for r in resources if r.account_id in ctx.consumer_accounts):
        yield Violation(resource=stack, message=(
            f"stack {stack} is planned without the platform stack: the operator role's trust and the "
            "release path cannot be verified. Plan the platform stack too (gpufleet plan without --stack)."))


RULES: tuple[Rule, ...] = (
    Rule(id="fleet.platform-in-plan", severity=Severity.ADVISORY, scope=Scope.FLEET,
         summary="Consumer stacks are judged together with the platform stack.",
         fix="plan every stack together", check_stack=check_platform_in_plan),
    Rule(id="fleet.no-training-in-phi", severity=Severity.MANDATORY, scope=Scope.FLEET,
         summary="No policy, trust, RAM share or access entry in a PHI account names a training account.",
         fix="remove the training principal; models arrive through the release bucket",
         check_stack=check_no_training_in_phi),
    Rule(id="fleet.release-flow", severity=Severity.MANDATORY, scope=Scope.FLEET,
         summary="Only the platform's release bucket grants other accounts: training write, inference read-only.",
         fix="grant inference only s3:GetObject/ListBucket, and only on the release bucket",
         check_stack=check_release_flow),
    Rule(id="fleet.phi-dra-same-account", severity=Severity.MANDATORY, scope=Scope.FLEET,
         summary="FSx data repository associations in a PHI account link only to that account's buckets.",
         fix="point dataRepositoryPath at a bucket of the PHI stack", check_stack=check_phi_dra),
    Rule(id="ram.capacity-reservations-only", severity=Severity.MANDATORY, scope=Scope.FLEET,
         summary="Only the platform shares by RAM, and only capacity reservations.",
         fix="share ec2 capacity-reservation ARNs only", check_stack=check_ram_capacity_only),
    Rule(id="ram.principals-in-fleet", severity=Severity.MANDATORY, scope=Scope.FLEET,
         summary="RAM shares go only to the fleet's consumer account ids.",
         fix="use the account ids in consumerAccounts", check_stack=check_ram_principals),
    Rule(id="ram.shares-accepted", severity=Severity.MANDATORY, scope=Scope.FLEET,
         summary="A pool share with external principals is accepted by every consumer of the plan it names.",
         fix="ramSharing: invitation in every stack file, or organization", check_stack=check_ram_accepted),
    Rule(id="iam.assume-only-platform", severity=Severity.MANDATORY, scope=Scope.FLEET,
         summary="Consumer accounts assume roles only in themselves or the platform account.",
         fix="name the platform role's ARN instead of * or another account's role",
         check_stack=check_assume_only_platform),
    Rule(id="fleet.metrics-platform-only", severity=Severity.MANDATORY, scope=Scope.FLEET,
         summary="Prometheus workspaces live only in the platform; remote write targets only them and the "
                 "remote-write role trusts only consumer accounts.",
         fix="delete the extra workspace; point remote write at the platform workspace ARN",
         check_stack=check_metrics_platform_only),
)
