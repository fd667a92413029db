"""Capacity that follows demand: the schedule's plan, the one decision function, the simulator and
its optimal oracle.

- ``plan``: the split a schedule asks for at an instant (windows, time zones, DST);
- ``decide``: the decision, pure: (now, schedules, fleet, in-flight moves, signals, deadlines) ->
  targets and moves; the simulator calls it every simulated minute, the reconciler every pass;
- ``simulate``, ``policies``, ``oracle``, ``trace``, ``chart``: the offline study of policies.
"""
