"""Run a fleet job on Ray: a local Ray by default, a cluster with ``ray_address``.

One actor per worker loads the model once and labels inputs one after another. Each worker gets
its next input as soon as it ends one (no fixed chunks). A worker takes ``gpus_per_worker`` GPUs
(Ray sets its CUDA_VISIBLE_DEVICES, so it sees them as cuda:0...) or, with device cpu (or no GPU in
the cluster), ``cpus_per_worker`` CPUs. Ctrl-C asks every worker to stop after its current frame;
finished inputs stay finished, the ones in progress are redone by the next run.

Ray is imported when a job runs, never at module import.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..core.config import PipelineConfig
from ..core.prompts import Concept
from ..stop_signals import StopSignals
from .inputs import FleetInput
from .label import LabelSpec
from .outputs import job_settings
from .progress import FleetProgress
from .summary import FleetSummary
from .worker import LabelWorker

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'sam3_ros[fleet]' (or: pip install ray)"
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # only paths and small dicts travel through Ray
TICK_S = 0.5  # progress refresh
SUMMARY_EVERY_S = 2.0  # summary.json rewrite, besides whenever an input starts or ends
STOP_WAIT_S = 60.0  # how long Ctrl-C waits for workers to close their current input
MAX_REPLACEMENTS = 3  # per worker slot, when its actor process dies


class FleetError(RuntimeError):
    """The job cannot run (no Ray, no resources, the model does not load); the message says why."""


@dataclass
class FleetJob:
    config: PipelineConfig
    concepts: list[Concept]
    inputs: list[FleetInput]
    output: str
    max_frames: int | None = None
    overlay: bool = True
    workers: int | None = None  # default: as many as the resources allow
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1.0
    ray_address: str | None = None  # None: a local Ray (or the one already initialised)
    progress: bool = True
    request: dict[str, Any] = field(default_factory=dict)  # the command line, for summary.json
    stop_signals: StopSignals | None = None  # reinstalled once Ray has started (ray.init replaces SIGTERM's)


def import_ray():
    try:
        import ray
    except ImportError as err:
        raise FleetError(f"--inputs runs on Ray, which is not installed: {INSTALL_HINT}") from err
    return ray


def run_fleet(job: FleetJob) -> FleetSummary:
    """Label every input of ``job``; summary.json in ``job.output`` tells how each went."""
    ray = import_ray()
    started_here = _connect(ray, job.ray_address)
    if job.stop_signals is not None:
        job.stop_signals.install()  # SIGTERM stops the job like Ctrl-C, not with Ray's sys.exit
    try:
        count, options, device = plan_workers(job, ray.cluster_resources())
        config = job.config.updated({"model.device": device})
        spec = LabelSpec(job.concepts, job.output, job_settings(config, job.concepts, job.max_frames, job.overlay),
                         job.max_frames, job.overlay)
        summary = FleetSummary(job.output, job.inputs, {**job.request, "workers": count, "resources": options})
        actor = ray.remote(LabelWorker).options(max_concurrency=2, **options)
        return _Scheduler(ray, lambda: actor.remote(config, spec, job.cpus_per_worker), count, job, summary).run()
    finally:
        if started_here:
            ray.shutdown()


def plan_workers(job: FleetJob, cluster: dict[str, float]) -> tuple[int, dict[str, float], str]:
    """How many workers, the Ray resources of each, and the device they run on."""
    device = job.config.model.device
    if device.startswith("cuda:"):
        raise FleetError("with --inputs, Ray assigns the GPUs: use --device cuda (or auto), not a GPU index")
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 0.0)
    if device == "cuda" and not gpus:
        raise FleetError("--device cuda, but the Ray cluster has no GPUs")
    on_gpu = device == "cuda" or (device == "auto" and gpus > 0)
    if on_gpu:
        need, have, unit = job.gpus_per_worker, gpus, "GPU"
        options = {"num_gpus": job.gpus_per_worker, "num_cpus": job.cpus_per_worker}
    else:
        need, have, unit = job.cpus_per_worker, cpus, "CPU"
        options = {"num_gpus": 0, "num_cpus": job.cpus_per_worker}
    if need <= 0:
        raise FleetError(f"--{unit.lower()}s-per-worker must be positive")
    capacity = int(have / need + 1e-9)
    workers = job.workers or capacity
    if workers < 1 or workers > capacity:
        raise FleetError(f"{workers} worker(s) x {need:g} {unit} need {workers * need:g} {unit}s; the Ray cluster "
                         f"has {have:g}: lower --workers or --{unit.lower()}s-per-worker")
    return min(workers, len(job.inputs)), options, "cuda" if on_gpu else "cpu"


def _connect(ray, address: str | None) -> bool:
    """Connect to ``address``, or use the Ray already initialised, or start a local one. True when
    this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": log.isEnabledFor(logging.INFO)}
    if address is None:
        kwargs["object_store_memory"] = LOCAL_OBJECT_STORE_BYTES
    try:
        ray.init(address=address, **kwargs)
    except Exception as err:  # ConnectionError, ValueError, ...: say which address failed
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise FleetError(f"cannot start or reach {where}: {type(err).__name__}: {err}") from err
    return True


class _Scheduler:
    """Hands inputs to free workers, gathers outcomes, keeps summary.json and the progress current."""

    def __init__(self, ray, new_actor, count: int, job: FleetJob, summary: FleetSummary):
        self.ray, self.new_actor, self.job, self.summary = ray, new_actor, job, summary
        self.pending = deque(job.inputs)
        self.actors = [new_actor() for _ in range(count)]
        self.replacements = [0] * count
        self.in_flight: dict[Any, tuple[int, FleetInput]] = {}
        self.status_refs: dict[int, Any] = {}
        self.described: dict[int, Any] = {}  # describe() of replacement workers, still to come
        self.written_at = 0.0
        summary.workers = [{"index": i, "state": "starting", "ended": 0, "input": None} for i in range(count)]
        self.progress = FleetProgress(len(job.inputs), count, job.progress)

    def run(self) -> FleetSummary:
        try:
            self._start_workers()
            for index in range(len(self.actors)):
                self._submit(index)
            while self.in_flight:
                self._tick(force=self._collect(timeout=TICK_S))
            for item in self.pending:  # left only when every worker died too often
                self.summary.finish(item.name, {"status": "failed", "error": "no worker left to run it"})
            self.summary.finished = True
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM through StopSignals
            self._stop(str(stop) or "stopped by the user")
        finally:
            self._tick(force=True)
            self.progress.close()
        return self.summary

    def _start_workers(self) -> None:
        self.summary.write()
        try:
            described = self.ray.get([actor.describe.remote() for actor in self.actors])
        except self.ray.exceptions.RayActorError as err:
            raise FleetError(f"a worker could not start: {_cause(err)}") from err
        for info in described:
            if "error" in info:
                raise FleetError(f"a worker on {info['node']} could not load the model: {info['error']}")
        for worker, info in zip(self.summary.workers, described):
            worker.update(info, state="idle")
        self.summary.workers_ready()

    def _submit(self, index: int) -> None:
        worker = self.summary.workers[index]
        if not self.pending or self.actors[index] is None:
            worker.update(state="finished" if self.actors[index] is not None else "gone", input=None)
            return
        item = self.pending.popleft()
        self.in_flight[self.actors[index].label.remote(item)] = (index, item)
        self.summary.running(item.name, index)
        worker.update(state="running", input=item.name, frames=0, total=None)

    def _collect(self, timeout: float) -> bool:
        """Record the outcomes of the inputs that ended and hand out new ones; True if any ended."""
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=timeout)
        for ref in ready:
            index, item = self.in_flight.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as err:  # the process died (killed, out of memory)
                outcome = {"status": "failed", "error": f"worker {index} died: {_cause(err)}"}
                self._replace(index)
            except self.ray.exceptions.RayTaskError as err:
                outcome = {"status": "failed", "error": _cause(err)}
            self.summary.finish(item.name, outcome)
            worker = self.summary.workers[index]
            worker.update(ended=worker["ended"] + 1, input=None, frames=0, total=None)
            self._submit(index)
        return bool(ready)

    def _replace(self, index: int) -> None:
        self.status_refs.pop(index, None)
        if self.replacements[index] >= MAX_REPLACEMENTS:
            self.actors[index] = None
            return
        self.replacements[index] += 1
        self.actors[index] = self.new_actor()
        self.described[index] = self.actors[index].describe.remote()

    def _tick(self, force: bool = False) -> None:
        """Ask the workers what they are doing (without waiting) and refresh the views."""
        for index, info in self._ready(self.described).items():
            self.summary.workers[index].update(info)
            if "error" in info:  # a replacement that cannot load the model: retire its slot
                self.actors[index] = None
        for index, status in self._ready(self.status_refs).items():
            if status.get("input") == self.summary.workers[index].get("input"):
                self.summary.workers[index].update(status)
        for index, actor in enumerate(self.actors):
            if actor is not None and index not in self.status_refs:
                self.status_refs[index] = actor.status.remote()
        if force or time.monotonic() - self.written_at >= SUMMARY_EVERY_S:
            self.summary.write()
            self.written_at = time.monotonic()
        self.progress.update(self.summary.totals(), self.summary.workers)

    def _ready(self, refs: dict[int, Any]) -> dict[int, dict]:
        """The answers among ``refs`` that have come (removed from it); never waits."""
        if not refs:
            return {}
        done, _ = self.ray.wait(list(refs.values()), num_returns=len(refs), timeout=0)
        answers = {}
        for index, ref in list(refs.items()):
            if ref in done:
                del refs[index]
                try:
                    answers[index] = self.ray.get(ref)
                except self.ray.exceptions.RayError:  # that worker died; _collect deals with it
                    pass
        return answers

    def _stop(self, reason: str) -> None:
        """Ctrl-C or SIGTERM: every worker stops after its current frame; their inputs are marked interrupted."""
        self.summary.interrupted = True
        log.warning("stopping: waiting up to %.0f s for the workers to close their current input", STOP_WAIT_S)
        for actor in self.actors:
            if actor is not None:
                actor.stop.remote()
        self.pending.clear()
        deadline = time.monotonic() + STOP_WAIT_S
        try:
            while self.in_flight and time.monotonic() < deadline:
                self._collect(timeout=TICK_S)
        except KeyboardInterrupt:  # a second Ctrl-C: leave now; what is in progress stays partial
            pass
        for index, item in self.in_flight.values():
            self.summary.finish(item.name, {"status": "interrupted", "error": f"{reason}; redone on re-run"})


def _cause(err: Exception) -> str:
    """The first line of a Ray error (the rest is a remote traceback)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
