"""The bundle's instance catalog: what a node checks itself against."""

from __future__ import annotations

import pytest

from gpufleet.lifecycle import instance_types

HEADER = "instance_type,gpus,gpu_model,gpu_memory_gib,vcpus,memory_gib,efa_interfaces\n"


def test_the_shipped_catalog_reads() -> None:
    p5 = instance_types.lookup("p5.48xlarge")
    assert (p5.gpus, p5.gpu_model, p5.efa_interfaces, p5.memory_gib) == (8, "H100", 32, 2048)
    assert p5.has_efa and p5.is_gpu
    cpu = instance_types.lookup("m7i.2xlarge")
    assert (cpu.gpus, cpu.gpu_model, cpu.is_gpu, cpu.has_efa) == (0, "", False, False)


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(instance_types.UnknownInstanceTypeError, match="known: c7i.4xlarge, g6e.48xlarge") as err:
        instance_types.lookup("p9.96xlarge")
    assert isinstance(err.value, KeyError) and err.value.instance_type == "p9.96xlarge"


@pytest.mark.parametrize(("rows", "message"), [
    ("p5.48xlarge,8,H100,80,192,2048,lots\n", r"x.csv:3: efa_interfaces='lots' is not a whole number"),
    ("p5.48xlarge,8,H100,80,192,2048,-1\n", r"x.csv:3: efa_interfaces='-1'"),
    ("p5.48xlarge,8,H100,80,192,2048\n", r"x.csv:3: expected 7 columns"),
    ("p5.48xlarge,8,,80,192,2048,32\n", r"x.csv:3: gpu_model='' with gpus=8"),
    ("p5.48xlarge,8,H100,80,192,2048,32\np5.48xlarge,8,H100,80,192,2048,32\n", r"x.csv:4: .*listed twice"),
])
def test_bad_rows_name_file_line_column_and_value(rows: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        instance_types.parse("# a comment\n" + HEADER + rows, source="x.csv")


def test_a_wrong_header_is_refused() -> None:
    with pytest.raises(ValueError, match="x.csv: header"):
        instance_types.parse("instance_type,gpus\np5.48xlarge,8\n", source="x.csv")
