"""The limb leads of the standard 12-lead layout are not negligible next to the chest leads.

Limb electrodes far from the heart in the infinite medium gave limb leads at about 0.01 mV
against about 0.5 mV in the chest leads; at torso-like positions (``LIMB_DISTANCE_RADII`` heart
radii from the centre, shoulders and below the heart) they are a sizeable fraction.
"""

from __future__ import annotations

import numpy as np
import pytest

from physim.cardiac import ecg as E
from physim.cardiac.heart import load_biventricular
from physim.cardiac.study import GroundTruth, SyntheticStudy


@pytest.fixture(scope="module")
def study():
    heart = load_biventricular("10k")
    return SyntheticStudy(heart, GroundTruth.landmarks(heart), noise_fraction=0.0)


def test_limb_electrodes_sit_at_torso_distance(study):
    h = study.heart
    system = E.standard_12_lead(h)
    names = list(system.electrode_names)
    pts = np.asarray(h.points)
    center = pts.mean(axis=0)
    radius = np.linalg.norm(pts - center, axis=1).max()
    for name in ("RA", "LA", "LL"):
        d = np.linalg.norm(system.electrodes[names.index(name)] - center)
        assert 2.0 * radius < d < 4.0 * radius, (name, d, radius)


def test_limb_leads_are_a_sizeable_fraction_of_the_chest_leads(study):
    names = list(study.lead_field.leads.lead_names)
    qrs = study.true_ecg[:, :150]  # the QRS complex lies in the first 150 ms
    p2p = dict(zip(names, qrs.max(axis=1) - qrs.min(axis=1)))
    limb = max(p2p[n] for n in ("I", "II", "III"))
    chest = max(p2p[f"V{i}"] for i in range(1, 7))
    # far-away limb electrodes gave a ratio of about 0.02
    assert limb > 0.15 * chest, p2p
    assert limb > 0.05, p2p  # mV
