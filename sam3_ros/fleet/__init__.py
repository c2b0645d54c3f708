"""Fleet labelling: ``sam3-ros run --inputs`` over many recordings on Ray.

| module | job |
|---|---|
| ``inputs.py`` | the list of recordings: a directory scan or a manifest, one output folder name each |
| ``outputs.py`` | is an input's output folder complete for these settings (checked, not assumed); clearing a partial one |
| ``label.py`` | one input on an already loaded model: check, clear, run the single-input runner, mark complete |
| ``summary.py`` | ``summary.json``: per input status and counts, job totals, written as the job goes |
| ``progress.py`` | the overall bar and the per-worker status lines |
| ``worker.py`` | the body of a Ray actor: the model loaded once, ``label`` one input, ``status``, ``stop`` |
| ``ray_job.py`` | Ray: connect or start, one actor per GPU (or CPU slot), schedule inputs as workers free up, Ctrl-C |

Nothing here imports Ray at module import time except ``ray_job.py``, which imports it when run.
"""
