"""Quick tier (seconds): GPUs present and of the right model, driver up, Xid and ECC counters,
clock throttling, EFA devices, FSx mounted, disk and memory headroom.

Each ``check_*`` function turns parsed output into CheckResults (pure, tested on fixtures);
``run_quick`` gathers the outputs through the CommandRunner and the file system.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from gpufleet.lifecycle.health import fi_info, nvidia_smi, xid
from gpufleet.lifecycle.health.nvidia_smi import SmiLog, SmiParseError
from gpufleet.lifecycle.health.results import Action, CheckResult, Status, Tier, worst
from gpufleet.lifecycle.health.runner import CommandOutput, CommandRunner
from gpufleet.lifecycle.health.settings import HealthSettings

KERNEL_LOG_COMMANDS = (("dmesg", "-T"), ("journalctl", "-k", "-b", "--no-pager", "-q"))

# Clock event reasons that mean the hardware slowed the GPU (fail) or software did (warn).
HW_THROTTLE = {"hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
SW_THROTTLE = {"sw_thermal_slowdown"}


def _result(check: str, status: Status, **kw: object) -> CheckResult:
    return CheckResult(check=check, status=status, tier=Tier.QUICK, **kw)  # type: ignore[arg-type]


def check_gpus(out: CommandOutput, settings: HealthSettings) -> tuple[list[CheckResult], SmiLog | None]:
    """gpu_count, gpu_model and driver from ``nvidia-smi -q -x``; the parsed log for later checks."""
    expected = settings.expected_gpus
    if not out.ok:
        if expected == 0:
            return [_result("driver", Status.SKIP, detail=f"no GPU expected here ({out.describe()})")], None
        return [_result("driver", Status.FAIL, detail=f"NVIDIA driver not usable: {out.describe()}",
                        action=Action.REBOOT, measured=0, expected=expected, unit="GPUs")], None
    try:
        log = nvidia_smi.parse_smi_xml(out.stdout)
    except SmiParseError as err:
        return [_result("driver", Status.FAIL, detail=f"nvidia-smi output unreadable: {err}", action=Action.REBOOT)], None
    results = [_result("driver", Status.PASS, detail=f"driver {log.driver_version}, CUDA {log.cuda_version}")]
    count = len(log.gpus)
    if expected and count < expected:
        results.append(_result("gpu_count", Status.FAIL, measured=count, expected=expected, unit="GPUs",
                               detail=f"{count} of {expected} GPUs visible", action=Action.REBOOT))
    else:
        results.append(_result("gpu_count", Status.PASS, measured=count, expected=expected or None, unit="GPUs",
                               detail=f"{count} GPUs visible"))
    models = sorted({nvidia_smi.model_of(g.product_name) for g in log.gpus})
    if expected and settings.gpu_model != "cpu" and models and models != [settings.gpu_model]:
        results.append(_result("gpu_model", Status.FAIL, detail=f"found {', '.join(models)}, expected {settings.gpu_model}",
                               action=Action.ISOLATE))
    else:
        results.append(_result("gpu_model", Status.PASS, detail=", ".join(models) or "none"))
    return results, log


def check_ecc(log: SmiLog) -> list[CheckResult]:
    """Per GPU: volatile uncorrectable errors, pending retirements/remaps (reset), remap failure (isolate)."""
    results = []
    for gpu in log.gpus:
        dev = gpu.bus_id
        if gpu.remapped_rows_failure:
            results.append(_result("ecc", Status.FAIL, device=dev, action=Action.ISOLATE,
                                   measured=gpu.aggregate.uncorrectable, expected=0, unit="errors",
                                   detail=f"GPU {dev}: row remapping failed (no spare rows)"))
        elif gpu.volatile.uncorrectable or gpu.remapped_rows_pending or gpu.retired_pages_pending:
            why = []
            if gpu.volatile.uncorrectable:
                why.append(f"{gpu.volatile.uncorrectable} volatile uncorrectable (double-bit) ECC errors")
            if gpu.remapped_rows_pending:
                why.append("row remap pending")
            if gpu.retired_pages_pending:
                why.append("page retirement pending")
            results.append(_result("ecc", Status.FAIL, device=dev, action=Action.RESET,
                                   measured=gpu.volatile.uncorrectable, expected=0, unit="errors",
                                   detail=f"GPU {dev}: {', '.join(why)}"))
        elif gpu.aggregate.uncorrectable:
            results.append(_result("ecc", Status.WARN, device=dev, action=Action.MONITOR,
                                   measured=gpu.aggregate.uncorrectable, expected=0, unit="errors",
                                   detail=f"GPU {dev}: {gpu.aggregate.uncorrectable} uncorrectable ECC errors over its life"))
    if not results:
        total = sum(g.volatile.correctable for g in log.gpus)
        results.append(_result("ecc", Status.PASS, measured=0, expected=0, unit="errors",
                               detail=f"no uncorrectable ECC errors on {len(log.gpus)} GPUs ({total} corrected)"))
    return results


def check_throttle(log: SmiLog) -> list[CheckResult]:
    """HW slowdown / thermal / power brake active: FAIL ISOLATE; software thermal: WARN."""
    results = []
    for gpu in log.gpus:
        hw = sorted(gpu.active_clock_reasons & HW_THROTTLE)
        sw = sorted(gpu.active_clock_reasons & SW_THROTTLE)
        temp = f" at {gpu.temperature_c:.0f} C" if gpu.temperature_c is not None else ""
        if hw:
            results.append(_result("throttle", Status.FAIL, device=gpu.bus_id, action=Action.ISOLATE,
                                   measured=gpu.temperature_c, unit="C",
                                   detail=f"GPU {gpu.bus_id}: {', '.join(hw)} active{temp}"))
        elif sw:
            results.append(_result("throttle", Status.WARN, device=gpu.bus_id, action=Action.MONITOR,
                                   measured=gpu.temperature_c, unit="C",
                                   detail=f"GPU {gpu.bus_id}: {', '.join(sw)} active{temp}"))
    if not results:
        results.append(_result("throttle", Status.PASS, detail=f"no hardware slowdown on {len(log.gpus)} GPUs"))
    return results


def check_xid(out: CommandOutput) -> list[CheckResult]:
    """Xid events since boot, graded by the catalog; the worst code sets the verdict."""
    if not out.ok:
        return [_result("xid", Status.WARN, action=Action.MONITOR, detail=f"kernel log unreadable: {out.describe()}")]
    events = xid.parse_xid_events(out.stdout)
    if not events:
        return [_result("xid", Status.PASS, measured=0, expected=0, unit="events", detail="no Xid events since boot")]
    results = []
    by_device: dict[str, list[xid.XidEvent]] = {}
    for event in events:
        by_device.setdefault(event.bus_id, []).append(event)
    for bus, dev_events in sorted(by_device.items()):
        codes = sorted({e.code for e in dev_events})
        meanings = {c: xid.meaning(c) for c in codes}
        status = worst(m.status for m in meanings.values())
        bad = [c for c in codes if meanings[c].status is status]
        actions = [meanings[c].action for c in bad]
        action = min(actions, key=list(Action).index)
        summary = "; ".join(f"Xid {c} {meanings[c].summary}" for c in bad)
        results.append(_result("xid", status, device=bus, action=action, measured=len(dev_events), expected=0,
                               unit="events", detail=f"GPU {bus}: {summary}"))
    return results


def check_efa(out: CommandOutput, settings: HealthSettings) -> CheckResult:
    expected = settings.expected_efa
    if expected == 0:
        return _result("efa", Status.SKIP, detail="no EFA expected on this instance type")
    devices = fi_info.efa_devices(out.stdout) if out.ok else []
    if len(devices) < expected:
        why = f" ({out.describe()})" if not out.ok and not devices else ""
        return _result("efa", Status.FAIL, measured=len(devices), expected=expected, unit="devices",
                       action=Action.ISOLATE, detail=f"{len(devices)} of {expected} EFA devices{why}")
    return _result("efa", Status.PASS, measured=len(devices), expected=expected, unit="devices",
                   detail=f"{len(devices)} EFA devices")


def check_fsx(mounts_text: str, mount_point: str | None) -> CheckResult:
    if not mount_point:
        return _result("fsx_mount", Status.SKIP, detail="no FSx mount configured")
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == (mount_point.rstrip("/") or "/"):
            if parts[2] == "lustre":
                return _result("fsx_mount", Status.PASS, detail=f"{parts[0]} on {mount_point}")
            return _result("fsx_mount", Status.FAIL, action=Action.REBOOT,
                           detail=f"{mount_point} is {parts[2]}, not lustre")
    return _result("fsx_mount", Status.FAIL, action=Action.REBOOT, detail=f"{mount_point} is not mounted")


def _headroom(check: str, free: float, warn: float, fail: float, what: str) -> CheckResult:
    pct = round(100 * free, 1)
    if free < fail:
        return _result(check, Status.FAIL, measured=pct, expected=100 * warn, unit="%", action=Action.ISOLATE,
                       detail=f"{what}: {pct}% free")
    if free < warn:
        return _result(check, Status.WARN, measured=pct, expected=100 * warn, unit="%", action=Action.MONITOR,
                       detail=f"{what}: {pct}% free")
    return _result(check, Status.PASS, measured=pct, expected=100 * warn, unit="%", detail=f"{what}: {pct}% free")


def check_disk(settings: HealthSettings, statvfs: Callable[[str], os.statvfs_result] = os.statvfs) -> list[CheckResult]:
    results = []
    for path in settings.disk_paths:
        try:
            st = statvfs(path)
        except OSError as err:
            results.append(_result("disk_headroom", Status.FAIL, device=path, action=Action.ISOLATE,
                                   detail=f"{path}: {err.strerror}"))
            continue
        free = st.f_bavail / st.f_blocks if st.f_blocks else 0.0
        verdict = _headroom("disk_headroom", free, settings.disk_warn_free, settings.disk_fail_free, path)
        results.append(replace(verdict, device=path))
    return results


def check_memory(meminfo_text: str, settings: HealthSettings) -> CheckResult:
    values = {}
    for line in meminfo_text.splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            values[key] = int(rest.split()[0])
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        return _result("memory_headroom", Status.WARN, action=Action.MONITOR, detail="MemTotal/MemAvailable not found")
    return _headroom("memory_headroom", available / total, settings.memory_warn_available,
                     settings.memory_fail_available, f"memory ({available // 1024} of {total // 1024} MiB)")


def read_kernel_log(runner: CommandRunner, timeout_s: float) -> CommandOutput:
    """dmesg, else the journal's kernel log (dmesg may be restricted to root)."""
    first = runner.run(KERNEL_LOG_COMMANDS[0], timeout_s)
    if first.ok:
        return first
    second = runner.run(KERNEL_LOG_COMMANDS[1], timeout_s)
    return second if second.ok else first


def run_quick(settings: HealthSettings, runner: CommandRunner) -> list[CheckResult]:
    """Every quick check; missing tools turn into FAIL (when the hardware needs them) or SKIP."""
    t = settings.command_timeout_s
    smi = runner.run(nvidia_smi.COMMAND, t)
    results, log = check_gpus(smi, settings)
    if log is not None:
        results += check_ecc(log)
        results += check_throttle(log)
    if settings.expected_gpus or log is not None:
        results += check_xid(read_kernel_log(runner, t))
    else:
        results.append(_result("xid", Status.SKIP, detail="no GPU expected here"))
    efa_out = runner.run(fi_info.COMMAND, t) if settings.expected_efa else CommandOutput(argv=fi_info.COMMAND, returncode=0)
    results.append(check_efa(efa_out, settings))
    results.append(check_fsx(_read(settings.mounts_path), settings.fsx_mount))
    results += check_disk(settings)
    results.append(check_memory(_read(settings.meminfo_path), settings))
    return results


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
