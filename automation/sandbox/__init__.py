"""The sandbox: an emulated AWS on 127.0.0.1 for the capacity automation, holding the fleet the
Pulumi program builds.

moto runs as a real HTTP server (``server``), wrapped by a small WSGI extension (``extension``)
adding what moto lacks for this job: capacity reservations with available-count accounting and
InsufficientInstanceCapacity, placement groups, RAM sharing of reservations (AssociateResourceShare),
AWS managed policies, failed scaling activities, server-side fault injection, a request log and a
snapshot of every account. ``apply`` applies the program as rendered offline (the render
``gpufleet plan`` makes) into the three accounts; ``outputs`` turns the program's exports into the
inventory through the stack-output contract; ``control`` starts, stops and reports the server.
``slurm_nodes`` runs each instance of a Slurm group as a real local slurmd node (docs/heal.md).

Nothing here is imported by the product code paths: the automation reaches the sandbox only through
the standard ``AWS_ENDPOINT_URL`` variables.
"""
