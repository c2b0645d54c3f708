"""Memory stays bounded while tracks live long, and while tracks and prompts churn.

The 2,000-frame RSS soak with its numbers is benchmarks/soak_memory.py; this is the fast guard.
"""
import numpy as np

from sam3_ros.core.config import PipelineConfig
from sam3_ros.core.pipeline import Sam3Pipeline
from sam3_ros.core.prompts import make_concept
from sam3_ros.backends.torch_backend import torch_components
from sam3_ros.model.loading import load_tiny


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def test_state_and_rss_stay_flat_for_long_lived_and_churning_tracks():
    loaded = load_tiny(seed=0, device="cpu", image_size=112)
    config = PipelineConfig().updated({"detection.score_threshold": 0.02, "detection.new_track_threshold": 0.02,
                                       "tracking.max_tracks": 6, "output.text_cache_size": 4})
    pipeline = Sam3Pipeline(torch_components(loaded), loaded.tokenizer, config)
    pipeline.set_concepts([make_concept(None, "person"), make_concept(None, "pallet")])
    base = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    state, rss, births = [], [], []

    def step(i):
        result = pipeline.step(np.roll(base, i, axis=1))
        state.append(pipeline.state_bytes())
        rss.append(rss_mib())
        births.append({inst.track_id for inst in result.instances})

    for i in range(150):  # long-lived tracks: their memory must plateau
        step(i)
    lived = births[40] & births[149]
    assert lived, "some tracks should live through the first phase"
    assert state[149] <= state[40]

    for i in range(150, 330):  # churn: resets end every track, new phrases cycle through the text cache
        if i % 15 == 0:
            pipeline.set_concepts([make_concept(None, "person"), make_concept(None, f"pallet {i}")])
        if i % 10 == 9:
            pipeline.request_reset()
        step(i)
    assert len(set().union(*births[150:])) > 20
    assert len(pipeline._text_cache) <= 4
    assert max(state[150:]) <= max(state[:150]) * 1.05
    assert rss[-1] - min(rss[60:120]) < 40, f"RSS grew from {min(rss[60:120]):.0f} to {rss[-1]:.0f} MiB"
