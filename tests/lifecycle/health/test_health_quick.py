"""Quick tier verdicts on recorded nvidia-smi / fi_info / dmesg / mounts outputs of p5 and p4d nodes."""

from __future__ import annotations

import os

import pytest
from fixture_runner import FIXTURES, FixtureRunner

from gpufleet.lifecycle.health import dcgm, fi_info, nvidia_smi, quick, xid
from gpufleet.lifecycle.health.results import Action, Status
from gpufleet.lifecycle.health.settings import HealthSettings

HEALTHY = {"nvidia-smi": "nvidia_smi_q_h100x8_healthy.xml", "dmesg": "dmesg_clean.txt",
           "fi_info": "fi_info_efa_p5_32.txt"}


def p5(tmp_path, **kw) -> HealthSettings:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       2097152000 kB\nMemFree:        1900000000 kB\nMemAvailable:   1950000000 kB\n")
    kw.setdefault("mounts_path", str(FIXTURES / "proc_mounts_fsx.txt"))
    return HealthSettings.for_instance_type("p5.48xlarge", node="p5-a", fsx_mount="/fsx",
                                            meminfo_path=str(meminfo), disk_paths=(str(tmp_path),), **kw)


def by_check(results, check):
    return [r for r in results if r.check == check]


def test_parse_h100_log_reads_every_gpu():
    log = nvidia_smi.parse_smi_xml((FIXTURES / "nvidia_smi_q_h100x8_healthy.xml").read_text())
    assert log.driver_version == "535.183.01" and log.cuda_version == "12.2"
    assert len(log.gpus) == 8 and {nvidia_smi.model_of(g.product_name) for g in log.gpus} == {"H100"}
    assert log.gpus[0].bus_id == "00000000:53:00.0" and log.gpus[0].active_clock_reasons == {"gpu_idle"}


def test_healthy_p5_passes_every_quick_check(tmp_path):
    results = quick.run_quick(p5(tmp_path), FixtureRunner(HEALTHY))
    statuses = {r.check: r.status for r in results}
    assert statuses == {"driver": Status.PASS, "gpu_count": Status.PASS, "gpu_model": Status.PASS,
                        "ecc": Status.PASS, "throttle": Status.PASS, "xid": Status.PASS, "efa": Status.PASS,
                        "fsx_mount": Status.PASS, "disk_headroom": Status.PASS, "memory_headroom": Status.PASS}
    # Application Xids (13, 43 from a user's bad kernel) are reported but are not node faults.
    assert "(application)" in by_check(results, "xid")[0].detail


def test_double_bit_ecc_fails_the_gpu_with_reset(tmp_path):
    runner = FixtureRunner({**HEALTHY, "nvidia-smi": "nvidia_smi_q_h100x8_dbe.xml"})
    ecc = by_check(quick.run_quick(p5(tmp_path), runner), "ecc")
    assert [(r.status, r.device, r.action) for r in ecc] == [(Status.FAIL, "00000000:86:00.0", Action.RESET)]
    assert ecc[0].measured == 2 and "row remap pending" in ecc[0].detail


def test_legacy_driver_double_bit_counters(tmp_path):
    settings = HealthSettings.for_instance_type("p4d.24xlarge", node="p4d-a")
    log = nvidia_smi.parse_smi_xml((FIXTURES / "nvidia_smi_q_a100x8_legacy_dbe.xml").read_text())
    ecc = {r.device: r for r in quick.check_ecc(log)}
    assert ecc["00000000:75:00.0"].status is Status.FAIL and ecc["00000000:75:00.0"].measured == 1
    # Only lifetime errors, none since the driver loaded: keep serving, watch it.
    assert ecc["00000000:97:00.0"].status is Status.WARN and ecc["00000000:97:00.0"].action is Action.MONITOR
    assert len(ecc) == 2
    gpus, _ = quick.check_gpus(FixtureRunner({"nvidia-smi": "nvidia_smi_q_a100x8_legacy_dbe.xml"}).run(
        nvidia_smi.COMMAND), settings)
    assert {r.check: r.status for r in gpus}["gpu_model"] is Status.PASS


def test_hardware_throttle_fails_one_gpu(tmp_path):
    runner = FixtureRunner({**HEALTHY, "nvidia-smi": "nvidia_smi_q_h100x8_throttle.xml"})
    throttle = by_check(quick.run_quick(p5(tmp_path), runner), "throttle")
    assert [(r.status, r.device) for r in throttle] == [(Status.FAIL, "00000000:A8:00.0")]
    assert "hw_slowdown" in throttle[0].detail and "hw_thermal_slowdown" in throttle[0].detail
    assert throttle[0].measured == 91  # sw_power_cap on the others is normal under load


def test_gpu_off_the_bus_fails_count_and_xid(tmp_path):
    runner = FixtureRunner({**HEALTHY, "nvidia-smi": "nvidia_smi_q_h100x7_offbus.xml", "dmesg": "dmesg_xid79.txt"})
    results = quick.run_quick(p5(tmp_path), runner)
    count = by_check(results, "gpu_count")[0]
    assert (count.status, count.measured, count.expected, count.action) == (Status.FAIL, 7, 8, Action.REBOOT)
    xids = by_check(results, "xid")
    assert [(r.status, r.device, r.action) for r in xids] == [(Status.FAIL, "0000:b9:00", Action.REBOOT)]
    assert "Xid 79 GPU has fallen off the bus" in xids[0].detail


def test_xid_severity_takes_worst_code():
    events = xid.parse_xid_events((FIXTURES / "dmesg_xid_ecc.txt").read_text())
    assert [e.code for e in events] == [63, 94, 48]
    (result,) = quick.check_xid(FixtureRunner({"dmesg": "dmesg_xid_ecc.txt"}).run(["dmesg", "-T"]))
    assert result.status is Status.FAIL and result.action is Action.RESET and result.measured == 3


def test_missing_efa_device_fails(tmp_path):
    runner = FixtureRunner({**HEALTHY, "fi_info": "fi_info_efa_p5_31.txt"})
    (efa,) = by_check(quick.run_quick(p5(tmp_path), runner), "efa")
    assert (efa.status, efa.measured, efa.expected) == (Status.FAIL, 31, 32)
    assert len(fi_info.efa_devices((FIXTURES / "fi_info_efa_p5_32.txt").read_text())) == 32


def test_fi_info_failure_and_missing_tools_fail_a_gpu_node(tmp_path):
    runner = FixtureRunner({"fi_info": "fi_info_no_efa.txt", "dmesg": "dmesg_clean.txt"}, returncodes={"fi_info": 1})
    results = {r.check: r for r in quick.run_quick(p5(tmp_path), runner)}
    assert results["efa"].status is Status.FAIL and "exited 1" in results["efa"].detail
    assert results["driver"].status is Status.FAIL and "nvidia-smi not found" in results["driver"].detail


def test_fsx_not_mounted_fails(tmp_path):
    settings = p5(tmp_path, mounts_path=str(FIXTURES / "proc_mounts_nofsx.txt"))
    (fsx,) = by_check(quick.run_quick(settings, FixtureRunner(HEALTHY)), "fsx_mount")
    assert fsx.status is Status.FAIL and fsx.detail == "/fsx is not mounted"


def test_memory_headroom_thresholds(tmp_path):
    settings = p5(tmp_path)
    low = "MemTotal: 1000000 kB\nMemAvailable: 20000 kB\n"
    tight = "MemTotal: 1000000 kB\nMemAvailable: 80000 kB\n"
    assert quick.check_memory(low, settings).status is Status.FAIL
    assert quick.check_memory(tight, settings).status is Status.WARN


def test_disk_headroom_reads_the_real_file_system(tmp_path):
    (result,) = quick.check_disk(p5(tmp_path))
    st = os.statvfs(tmp_path)
    assert result.device == str(tmp_path)
    assert result.measured == pytest.approx(100 * st.f_bavail / st.f_blocks, abs=1.0)


def test_cpu_host_skips_gpu_checks(tmp_path):
    settings = HealthSettings.for_instance_type(None, node="cpu-a", disk_paths=(str(tmp_path),))
    results = {r.check: r.status for r in quick.run_quick(settings, FixtureRunner({}))}
    assert results["driver"] is Status.SKIP and results["efa"] is Status.SKIP and results["xid"] is Status.SKIP


def test_dcgm_diag_failure_names_gpu_and_test():
    report = dcgm.parse_diag_json((FIXTURES / "dcgmi_diag_r3_fail.json").read_text())
    assert [(o.test, o.gpu) for o in report.failed] == [("GPU Memory", "5")]
    assert "double-bit ECC" in report.failed[0].message
    assert dcgm.parse_diag_json((FIXTURES / "dcgmi_diag_r3_pass.json").read_text()).failed == ()
