"""Executors of main's chains: a failed chain is reported with its error and the others
finish, one after the other and on a local Ray cluster alike."""

from __future__ import annotations

import pytest

from sbd import executors
from sbd.steps.main import _split

# a library function that fails for one of its inputs (an unknown ROI), as a chain may
CHAINS = [{"text": "V1,HVC", "what": "rois", "valid": ("V1", "HVC")},
          {"text": "V1,XX", "what": "rois", "valid": ("V1", "HVC")},
          {"text": "HVC", "what": "rois", "valid": ("V1", "HVC")}]


def _check(results):
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].value == ["V1", "HVC"] and results[2].value == ["HVC"]
    assert "ValueError: Unknown rois=['XX']" in results[1].error
    assert results[1].kwargs == CHAINS[1]


def test_a_failed_chain_does_not_lose_the_others():
    _check(executors.run_chains(_split, CHAINS, "sequential"))
    with pytest.raises(ValueError, match="Unknown executor='dask'; valid: sequential, ray"):
        executors.run_chains(_split, CHAINS, "dask")


@pytest.mark.lab
def test_a_failed_chain_on_ray_does_not_lose_the_others():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[lab]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # a GPU asked of a cluster without one is dropped, not waited for
        _check(executors.run_chains(_split, CHAINS, "ray", num_gpus=1))
    finally:
        ray.shutdown()
